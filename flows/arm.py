"""arm: another training profile through the pipeline's train and evaluate steps.

``python -m flows.arm --profile cpu-rl`` (``make arm ARM=cpu-rl``; without a profile,
``cpu-prior``) trains the profile and evaluates its models on the test split with the same
flows, code and settings as ``dvc repro`` does for the pipeline's profile
(``runs.<run>.profile``). Its results land under the profile's own names
(``reports/train/<profile>/``, ``reports/evaluate/<profile>/``,
``reports/metrics/<profile>.json``, MLflow runs tagged with the profile) and are committed
with the project; the report stage reads every arm that has them, so the next
``dvc repro`` puts this arm in the comparison. The pipeline's own profile is refused: DVC
runs it and keeps its lock.
"""

from __future__ import annotations

import argparse

from prefect import flow, get_run_logger

from flows.cli import run
from flows.evaluate import evaluate_flow
from flows.train import train_flow
from people_relation.infra.io import read_settings
from people_relation.params import ParamsError
from people_relation.settings import Settings

# the published method in miniature (a start from the keyword rules, no gold label); `make arm` too
DEFAULT_ARM = "cpu-prior"


def check_arm(settings: Settings, arm: str) -> None:
    """``arm`` must be a defined profile other than the pipeline's."""
    settings.profile(arm)  # names the defined profiles when it is not one
    if arm == settings.train.profile:
        raise ParamsError(
            f"params.yaml: {arm!r} is the profile of run {settings.run!r} (runs.{settings.run}.profile); "
            "`dvc repro` trains and evaluates it"
        )


@flow(name="arm", log_prints=True)
def arm_flow(params_file: str = "params.yaml", run: str | None = None, arm: str = DEFAULT_ARM) -> dict:
    check_arm(read_settings(params_file, run), arm)
    trained = train_flow(params_file=params_file, run=run, profile_name=arm)
    tested = evaluate_flow(params_file=params_file, run=run, profile_name=arm)
    get_run_logger().info("Arm %s done; `dvc repro` brings the comparison up to date", arm)
    return {"train": trained, "evaluate": tested}


def _arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--profile", dest="arm", default=DEFAULT_ARM, help=f"the profile to run (default: {DEFAULT_ARM})"
    )


def _checked(args: argparse.Namespace) -> bool:
    """Refuse a wrong profile before any flow (or Prefect server) starts."""
    check_arm(read_settings(args.params_file, args.run), args.arm)
    return False


if __name__ == "__main__":
    run(arm_flow, add_arguments=_arguments, instead=_checked)
