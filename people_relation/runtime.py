"""Process start-up: the project's defaults for the tools it runs, applied explicitly.

``configure()`` is called first thing by every command (``flows/__init__.py``, the GRPO
training process, the scripts, the test session), before Prefect, MLflow or Hugging Face
are imported: no telemetry or update checks from Prefect, MLflow, DVC, Hugging Face,
vLLM, Streamlit (the demo page) or Selenium (its browser test), and the project's loggers
shown in Prefect's run logs. A variable already set is left alone. Importing this module
changes nothing.
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
    # the demo page's browser would report page views; Selenium Manager sends usage stats
    "STREAMLIT_BROWSER_GATHER_USAGE_STATS": "false",
    "SE_AVOID_STATS": "true",
    "TOKENIZERS_PARALLELISM": "false",
    # show this project's own log lines (warm-up progress, GRPO steps) in Prefect's run logs
    "PREFECT_LOGGING_EXTRA_LOGGERS": "people_relation",
}
# one INFO line per HTTP request would drown the evaluation's progress lines
NOISY_LOGGERS = ("httpx", "httpx2", "openai")
# The tracking server the user asked for, kept before MLflow runs: MLflow's own
# set_tracking_uri() writes MLFLOW_TRACKING_URI into the environment, so reading it later
# would return whatever store the last run in this process used.
USER_TRACKING_URI_ENV = "PEOPLE_RELATION_USER_MLFLOW_TRACKING_URI"
_configured = False


def configure() -> None:
    """Apply the defaults once per process (later calls do nothing)."""
    global _configured
    if _configured:
        return
    _configured = True
    if os.environ.get("MLFLOW_TRACKING_URI"):
        os.environ.setdefault(USER_TRACKING_URI_ENV, os.environ["MLFLOW_TRACKING_URI"])
    for name, value in OFFLINE_DEFAULTS.items():
        os.environ.setdefault(name, value)
    # Prefect attaches its handlers to the loggers above; INFO is what shows progress.
    logging.getLogger("people_relation").setLevel(logging.INFO)
    for noisy in NOISY_LOGGERS:
        logging.getLogger(noisy).setLevel(logging.WARNING)


def user_tracking_uri() -> str | None:
    """The ``MLFLOW_TRACKING_URI`` this process (or the command that started it) was given."""
    return os.environ.get(USER_TRACKING_URI_ENV) or (None if _configured else os.environ.get("MLFLOW_TRACKING_URI"))
