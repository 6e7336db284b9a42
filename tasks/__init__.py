"""Prefect tasks: thin wrappers that connect the core logic to files, hubs and trackers.

Importing this package applies the project's offline defaults before any tool is
imported: no telemetry or update checks from Prefect, MLflow, DVC, Hugging Face or vLLM.
A variable already set in the environment is left alone.
"""

from __future__ import annotations

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
}


def apply_offline_defaults() -> None:
    for name, value in OFFLINE_DEFAULTS.items():
        os.environ.setdefault(name, value)


apply_offline_defaults()
