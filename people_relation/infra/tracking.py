"""MLflow tracking: where runs go, one parent run per pipeline run, a nested run per step.

How the steps of one pipeline run find their parent run:
  * the Prefect ``pipeline`` flow creates the parent and hands its id down in
    ``PEOPLE_RELATION_MLFLOW_PARENT_RUN_ID``;
  * under ``dvc exp run`` the parent is the experiment's (``DVC_EXP_NAME``);
  * under ``dvc repro`` it is that ``dvc`` process's (DVC sets ``DVC_STAGE`` for a stage);
  * a step run by hand (``python -m flows.<step>``) is a run of its own.
Every run is tagged with the git commit, the profile, the md5 of ``dvc.lock`` when the step
started (the versions of every input the upstream stages produced) and the Prefect flow
run; the Prefect run gets a ``mlflow-run`` artifact pointing back at the MLflow run.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from people_relation.infra.io import PROJECT_ROOT, project_path
from people_relation.runtime import user_tracking_uri
from people_relation.settings import Tracking

SQLITE_PREFIX = "sqlite:///"
PARENT_RUN_ENV = "PEOPLE_RELATION_MLFLOW_PARENT_RUN_ID"
PIPELINE_KEY_TAG = "pipeline.key"


def store_root() -> Path:
    """Where relative store paths start: the project, or for a queued ``dvc exp run`` (which
    runs in a temporary copy) the repository it was queued from, so its runs are not lost."""
    return Path(os.environ.get("DVC_ROOT") or PROJECT_ROOT)


def tracking_uri(tracking: Tracking) -> str:
    """``MLFLOW_TRACKING_URI`` if set, else ``tracking.uri`` with a relative sqlite path made absolute."""
    uri = user_tracking_uri() or tracking.uri
    if uri.startswith(SQLITE_PREFIX) and not uri.startswith(SQLITE_PREFIX + "/"):
        uri = SQLITE_PREFIX + str(project_path(uri[len(SQLITE_PREFIX) :], store_root()))
    return uri


def flatten(params: Mapping[str, Any] | BaseModel, prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}``, for logging nested params (settings included)."""
    if isinstance(params, BaseModel):
        params = params.model_dump(exclude_unset=True)  # what the params file says
    flat: dict[str, Any] = {}
    for key, value in params.items():
        name = f"{prefix}{key}"
        if isinstance(value, BaseModel):
            value = value.model_dump(exclude_unset=True)
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


def lock_md5(root: Path = PROJECT_ROOT) -> str:
    """md5 of ``dvc.lock``: which data, models and params the finished stages were made from."""
    lock = root / "dvc.lock"
    return hashlib.md5(lock.read_bytes()).hexdigest() if lock.is_file() else "none"


def prefect_flow_run_id() -> str | None:
    from prefect.runtime import flow_run

    run_id = flow_run.id
    return str(run_id) if run_id else None


def run_tags(profile: str) -> dict[str, str]:
    """Tags of every run: git commit, profile, dvc.lock md5, Prefect flow run."""
    tags = {
        "git.commit": git_commit(),
        "profile": profile,
        "dvc.lock_md5": lock_md5(),
    }
    if run_id := prefect_flow_run_id():
        tags["prefect.flow_run_id"] = run_id
    return tags


def dvc_process() -> Any | None:
    """The ``dvc`` process this one runs under, if any."""
    import psutil

    try:
        for proc in psutil.Process().parents():
            command = proc.cmdline()
            if any(Path(arg).name == "dvc" for arg in command[:2]) or command[1:3] == ["-m", "dvc"]:
                return proc
    except psutil.Error:
        return None
    return None


def pipeline_group(environ: Mapping[str, str]) -> tuple[str, str] | None:
    """(key, run name) of the DVC run this step belongs to, or None when DVC did not start it."""
    if name := environ.get("DVC_EXP_NAME"):
        return f"dvc-exp:{name}", f"dvc exp run {name}"
    if environ.get("DVC_STAGE") and (proc := dvc_process()):
        started = proc.create_time()
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(started))
        return f"dvc-repro:{proc.pid}:{started:.0f}", f"dvc repro {stamp}"
    return None


def start_experiment(tracking: Tracking) -> str:
    """Point MLflow at the tracking store and the project's experiment; returns its id."""
    import mlflow

    uri = tracking_uri(tracking)
    mlflow.set_tracking_uri(uri)
    name = tracking.experiment
    experiment = mlflow.get_experiment_by_name(name)
    if experiment is None:
        # A local store keeps artifacts in the project; a tracking server decides for itself.
        local = uri.startswith((SQLITE_PREFIX, "file:"))
        artifacts = project_path(tracking.artifact_dir, store_root()).as_uri() if local else None
        experiment_id = mlflow.create_experiment(name, artifact_location=artifacts)
    else:
        experiment_id = experiment.experiment_id
    mlflow.set_experiment(experiment_id=experiment_id)
    return experiment_id


def find_or_create_parent(client: Any, experiment_id: str, key: str, name: str, tags: Mapping[str, str]) -> str:
    """The parent run tagged ``pipeline.key = key``, created on the first step of the run."""
    found = client.search_runs([experiment_id], filter_string=f"tags.`{PIPELINE_KEY_TAG}` = '{key}'", max_results=1)
    if found:
        run_id = found[0].info.run_id
        client.update_run(run_id, status="RUNNING")
        return run_id
    run = client.create_run(experiment_id, run_name=name, tags=dict(tags) | {PIPELINE_KEY_TAG: key})
    return run.info.run_id


def run_url(run: Any) -> str | None:
    """The run's page in the MLflow UI when the store is a tracking server."""
    import mlflow

    uri = mlflow.get_tracking_uri()
    if not uri.startswith(("http://", "https://")):
        return None
    return f"{uri.rstrip('/')}/#/experiments/{run.info.experiment_id}/runs/{run.info.run_id}"


def link_prefect_to_mlflow(run: Any, parent_id: str | None) -> None:
    """A ``mlflow-run`` artifact on the current Prefect flow run: where its MLflow run is."""
    import mlflow

    if prefect_flow_run_id() is None:
        return
    from prefect.artifacts import create_markdown_artifact

    url = run_url(run)
    lines = [
        f"MLflow run **{run.info.run_name}** `{run.info.run_id}`",
        f"- experiment id: `{run.info.experiment_id}`",
        f"- parent (pipeline) run: `{parent_id}`" if parent_id else "- no parent run",
        f"- tracking store: `{mlflow.get_tracking_uri()}`",
        f"- open: {url}" if url else "- open: `make mlflow-ui`, then the experiment's run list",
    ]
    create_markdown_artifact("\n".join(lines), key="mlflow-run", description="The MLflow run of this flow run")


@contextmanager
def mlflow_run(tracking: Tracking, profile: str, step: str, logged_params: Mapping[str, Any]) -> Iterator[Any]:
    """The MLflow run of one pipeline step for ``profile``, nested under its pipeline run when there is one.

    A parent found through DVC (no Prefect pipeline flow around) is marked running while the
    step runs and finished (or failed) after it: the last step leaves it finished.
    """
    import mlflow
    from mlflow.tracking import MlflowClient

    experiment_id = start_experiment(tracking)
    client = MlflowClient()
    tags = run_tags(profile)
    parent_id = os.environ.get(PARENT_RUN_ENV) or None
    owns_parent = False
    if parent_id is None and (group := pipeline_group(os.environ)):
        key, name = group
        parent_tags = {k: v for k, v in tags.items() if k != "prefect.flow_run_id"}
        parent_id = find_or_create_parent(client, experiment_id, key, name, parent_tags | {"pipeline.kind": "dvc"})
        owns_parent = True
    step_tags = tags | {"pipeline.step": step}
    if stage := os.environ.get("DVC_STAGE"):
        step_tags["dvc.stage"] = stage
    status = "FAILED"
    try:
        with mlflow.start_run(run_name=step, tags=step_tags, parent_run_id=parent_id) as run:
            mlflow.log_params(flatten(logged_params))
            link_prefect_to_mlflow(run, parent_id)
            yield run
        status = "FINISHED"
    finally:
        if owns_parent and parent_id:
            client.set_terminated(parent_id, status=status)


def parent_run_id() -> str | None:
    """The pipeline run the active step run is nested in."""
    import mlflow

    run = mlflow.active_run()
    return run.data.tags.get("mlflow.parentRunId") if run else None
