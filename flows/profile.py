"""profile: the pipeline's training profile resolved, as DVC tracks it.

A profile in ``params.yaml`` may name a ``base`` and list only what differs. DVC reads
parameters key by key from a file, so the train, serve and evaluate stages do not track
``profiles.<name>`` (which would hold only the differences): they track this step's
output, ``train.reports_dir/<profile>/profile.yaml``, the profile complete and typed (every
value, defaults included). A change to a base profile reaches every stage of a profile
built on it, and an edit that leaves the resolved values as they were (a comment, a value
moved into a base) re-runs nothing after this step.

``python -m flows.profile [--profile NAME]`` writes the file (``python -m flows.train
--dry-run`` prints it, each value after its description); the step's MLflow run keeps it.
"""

from __future__ import annotations

import argparse

import mlflow
from prefect import flow, get_run_logger

from flows.cli import run
from people_relation.infra.io import read_settings
from people_relation.infra.paths import resolve_arm
from people_relation.infra.tracking import mlflow_run
from people_relation.settings import profile_yaml


@flow(name="profile", log_prints=True)
def profile_flow(params_file: str = "params.yaml", run: str | None = None, profile_name: str | None = None) -> str:
    arm = resolve_arm(read_settings(params_file, run), profile_name)
    path = arm.paths.resolved_profile
    with mlflow_run(arm.settings.tracking, arm.name, "profile", {"profile": arm.name}):
        path.parent.mkdir(parents=True, exist_ok=True)
        scratch = path.with_name(f".{path.name}.partial")
        scratch.write_text(profile_yaml(arm.profile, arm.name), encoding="utf-8")
        scratch.replace(path)  # a reader never sees half a file
        mlflow.log_artifact(str(path), "profile")
    get_run_logger().info("Profile %s resolved into %s", arm.name, path)
    return str(path)


def _arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--profile", dest="profile_name", default=None, help="another profile than the run's (runs.<run>.profile)"
    )


if __name__ == "__main__":
    run(profile_flow, add_arguments=_arguments)
