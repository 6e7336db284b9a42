"""pipeline: the whole DVC pipeline as one Prefect flow, a task per stage.

Each task runs ``dvc repro --single-item <stage>``: DVC decides from ``dvc.lock`` whether
the stage is stale, runs its step flow (``python -m flows.<step>``) when it is, and records
the new hashes. So a deployment run and ``dvc repro`` from a shell are the same thing and
never disagree about which outputs are current; an unchanged stage is skipped either way.

``set_params`` (``["split.seed=7", ...]``, the syntax of ``dvc exp run -S``) is written
into ``params.yaml`` before the run, by DVC's own code, exactly as ``dvc exp run -S``
writes it: ``git diff params.yaml`` and ``dvc.lock`` then show what the run used.

Stages that fail for a reason that can pass (exit status 75: a vLLM server that did not
start or stopped answering) are retried ``pipeline.retries.<stage>`` times; bad data or
bad params (exit status 1) fail at once with the step's message.

The command keeps the project's exit-status contract (:mod:`people_relation.errors`): 0 when
every stage is up to date; 75 when a stage still failed for a reason that can pass after its
retries (run it again: finished stages are kept); 2 when the run was asked for something the
pipeline does not have (a ``--target`` stage, a ``--set`` key or form), before any stage ran;
1 for bad params or data, or a stage that failed for good.

The flow opens the MLflow parent run of the pipeline run; each step's run nests under it.

    python -m flows.pipeline [--set split.seed=7 ...] [--target evaluate ...] [--force]
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from prefect import flow, get_run_logger

from flows.cli import PIPELINE_FLOW_RUN_ENV
from people_relation.errors import exit_status
from people_relation.infra.io import PARAMS_FILE, PROJECT_ROOT, read_settings
from people_relation.infra.tracking import PARENT_RUN_ENV, link_prefect_to_mlflow, lock_md5, run_tags, start_experiment
from people_relation.params import ParamsError
from people_relation.pipeline import check_overrides, stage_order, with_upstream
from steps.pipeline import StageFailed, repro_stage, write_params


def dvc_graph(root: Path = PROJECT_ROOT) -> tuple[list[str], dict[str, set[str]]]:
    """The stages of ``dvc.yaml`` in run order, and which stages each one reads from."""
    from dvc.repo import Repo

    with Repo(str(root)) as repo:
        graph = repo.index.graph
        stages = [s for s in repo.index.stages if s.addressing != "dvc.yaml"]
        declared = [s.addressing for s in stages]
        edges = {s.addressing: {d.addressing for d in graph.successors(s)} for s in stages}
    return stage_order(edges, declared), edges


def base_stage(stage: str) -> str:
    """``serve`` of ``serve@sentiment``: the stage of dvc.yaml a run's stage comes from."""
    return stage.split("@", 1)[0]


def stage_env(parent_run_id: str | None, flow_run_id: str | None) -> dict[str, str]:
    """The environment of ``dvc repro``: this Python first on PATH, the MLflow parent, and
    no ``PREFECT__FLOW_RUN_ID`` (the worker's id of *this* run, which a step must not claim)."""
    env = {k: v for k, v in os.environ.items() if k != "PREFECT__FLOW_RUN_ID"}
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env["PYTHONUNBUFFERED"] = "1"
    if parent_run_id:
        env[PARENT_RUN_ENV] = parent_run_id
    if flow_run_id:
        env[PIPELINE_FLOW_RUN_ENV] = flow_run_id
    return env


@flow(name="pipeline", log_prints=True)
def pipeline_flow(
    set_params: list[str] | None = None,
    targets: list[str] | None = None,
    force: bool = False,
) -> dict[str, str]:
    """Bring the pipeline's outputs up to date, stage by stage, through DVC.

    set_params: ``KEY=VALUE`` values written into params.yaml first (``dvc exp run -S`` syntax).
    targets: stages to bring up to date with everything they depend on (default: all).
    force: run the stages even when DVC finds them up to date.
    """
    import mlflow
    from prefect.runtime import flow_run

    logger = get_run_logger()
    overrides = check_overrides(set_params or [])
    if overrides:
        write_params(overrides)
    settings = read_settings(PARAMS_FILE)
    order, edges = dvc_graph()
    stages = with_upstream(order, edges, targets) if targets else order
    retries = settings.pipeline.retries  # by stage, for each of its runs (serve: serve@relation, serve@sentiment)
    unknown = sorted(set(retries) - {base_stage(s) for s in order})
    if unknown:
        raise ParamsError(f"params.yaml: pipeline.retries names unknown stage(s) {unknown}; stages: {order}")
    delay = settings.pipeline.retry_delay_s
    flow_run_id = str(flow_run.id) if flow_run.id else None

    experiment_id = start_experiment(settings.tracking)
    tags = run_tags(settings.train.profile) | {"pipeline.kind": "prefect", "pipeline.stages": ",".join(stages)}
    name = f"pipeline {flow_run.name}" if flow_run.name else "pipeline"
    outcomes: dict[str, str] = {}
    with mlflow.start_run(experiment_id=experiment_id, run_name=name, tags=tags) as parent:
        mlflow.log_params({"set_params": " ".join(overrides) or "-", "targets": ",".join(stages), "force": force})
        link_prefect_to_mlflow(parent, None)
        env = stage_env(parent.info.run_id, flow_run_id)
        logger.info("Stages, in order: %s (MLflow run %s)", " -> ".join(stages), parent.info.run_id)
        for stage in stages:
            tries = retries.get(base_stage(stage), 0)
            run = repro_stage.with_options(name=f"dvc-repro-{stage}", retries=tries, retry_delay_seconds=delay)
            outcomes[stage] = run(stage, force, env)
            mlflow.set_tag(f"stage.{stage.replace('@', '.')}", outcomes[stage])  # MLflow keys hold no @
        mlflow.set_tag("dvc.lock_md5.after", lock_md5())
    ran = [s for s, o in outcomes.items() if o == "ran"]
    logger.info("Pipeline up to date; ran: %s", ", ".join(ran) if ran else "nothing (all stages were current)")
    return outcomes


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m flows.pipeline", description=pipeline_flow.__doc__)
    parser.add_argument("--set", dest="set_params", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--target", dest="targets", action="append", default=None, metavar="STAGE")
    parser.add_argument("--force", action="store_true")
    args = parser.parse_args(argv)
    try:
        pipeline_flow(**vars(args))
    except Exception as err:
        status = pipeline_exit_status(err)
        if status is None:  # not one of ours: a bug, whose traceback shows where
            raise
        print(f"\nerror: {err}", file=sys.stderr)
        sys.exit(status)


def pipeline_exit_status(err: BaseException) -> int | None:
    """The command's status for the failure it stopped on (None: a bug, shown with its traceback)."""
    if isinstance(err, StageFailed):
        return err.exit_status
    return exit_status(err)


if __name__ == "__main__":
    main()
