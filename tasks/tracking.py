"""MLflow tracking: where runs go, and one run per pipeline step."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from people_relation.params import get_str
from tasks import USER_MLFLOW_TRACKING_URI
from tasks.io import PROJECT_ROOT, project_path

SQLITE_PREFIX = "sqlite:///"


def tracking_uri(params: Mapping[str, Any]) -> str:
    """``MLFLOW_TRACKING_URI`` if set, else ``tracking.uri`` with a relative sqlite path made absolute."""
    uri = USER_MLFLOW_TRACKING_URI or get_str(params, "tracking.uri")
    if uri.startswith(SQLITE_PREFIX) and not uri.startswith(SQLITE_PREFIX + "/"):
        uri = SQLITE_PREFIX + str(project_path(uri[len(SQLITE_PREFIX) :]))
    return uri


def flatten(params: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}``, for logging nested params."""
    flat: dict[str, Any] = {}
    for key, value in params.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat |= flatten(value, name + ".")
        else:
            flat[name] = value
    return flat


def git_commit(root: Path = PROJECT_ROOT) -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True, timeout=10
        )
        return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def prefect_flow_run_id() -> str | None:
    from prefect.runtime import flow_run

    run_id = flow_run.id
    return str(run_id) if run_id else None


@contextmanager
def mlflow_run(params: Mapping[str, Any], step: str, logged_params: Mapping[str, Any]) -> Iterator[Any]:
    """An MLflow run for one pipeline step, tagged with the step, git commit and Prefect run."""
    import mlflow

    uri = tracking_uri(params)
    mlflow.set_tracking_uri(uri)
    name = get_str(params, "tracking.experiment")
    if mlflow.get_experiment_by_name(name) is None:
        # A local store keeps artifacts in the project; a tracking server decides for itself.
        local = uri.startswith((SQLITE_PREFIX, "file:"))
        artifacts = project_path(get_str(params, "tracking.artifact_dir")).as_uri() if local else None
        mlflow.create_experiment(name, artifact_location=artifacts)
    mlflow.set_experiment(name)
    tags = {"pipeline.step": step, "git.commit": git_commit()}
    if run_id := prefect_flow_run_id():
        tags["prefect.flow_run_id"] = run_id
    with mlflow.start_run(run_name=step, tags=tags) as run:
        mlflow.log_params(flatten(logged_params))
        yield run
