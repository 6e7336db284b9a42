"""Prefect tasks: thin wrappers that connect the core logic to files, hubs and trackers.

Importing this package applies the project's defaults before any tool is imported: no
telemetry or update checks from Prefect, MLflow, DVC, Hugging Face or vLLM, and the
project's loggers shown in Prefect's run logs. A variable already set is left alone.
"""

from __future__ import annotations

import logging
import os

OFFLINE_DEFAULTS = {
    "DO_NOT_TRACK": "1",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "PREFECT_CLOUD_ENABLE_ORCHESTRATION_TELEMETRY": "false",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
    "DVC_NO_ANALYTICS": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "HF_HUB_DISABLE_UPDATE_CHECK": "1",
    "VLLM_NO_USAGE_STATS": "1",
    "VLLM_DO_NOT_TRACK": "1",
    "TOKENIZERS_PARALLELISM": "false",
    # show this project's own log lines (warm-up progress, GRPO steps) in Prefect's run logs
    "PREFECT_LOGGING_EXTRA_LOGGERS": "tasks",
}


# The tracking server the user asked for, read before MLflow is imported: MLflow's own
# set_tracking_uri() writes MLFLOW_TRACKING_URI into the environment, so reading it later
# would return whatever store the last run in this process used.
USER_MLFLOW_TRACKING_URI = os.environ.get("MLFLOW_TRACKING_URI")


def apply_offline_defaults() -> None:
    for name, value in OFFLINE_DEFAULTS.items():
        os.environ.setdefault(name, value)


apply_offline_defaults()
# Prefect attaches its handlers to the loggers above; INFO is what shows progress.
logging.getLogger(__name__).setLevel(logging.INFO)
# one INFO line per HTTP request would drown the evaluation's progress lines
for _noisy in ("httpx", "httpx2", "openai"):
    logging.getLogger(_noisy).setLevel(logging.WARNING)
