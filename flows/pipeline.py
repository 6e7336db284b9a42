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

The flow opens the MLflow parent run of the pipeline run; each step's run nests under it.

    python -m flows.pipeline [--set split.seed=7 ...] [--target evaluate ...] [--force]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task

from flows.cli import PIPELINE_FLOW_RUN_ENV
from people_relation.infra.io import PARAMS_FILE, PROJECT_ROOT, read_project_params
from people_relation.infra.tracking import PARENT_RUN_ENV, link_prefect_to_mlflow, lock_md5, run_tags, start_experiment
from people_relation.params import ParamsError, get, get_int
from people_relation.pipeline import (
    PipelineError,
    check_overrides,
    failed_exit_code,
    is_transient,
    stage_order,
    stage_outcome,
    with_upstream,
)


class StageFailed(RuntimeError):
    def __init__(self, stage: str, exit_code: int | None, tail: str):
        self.stage, self.exit_code = stage, exit_code
        hint = "a retry may help" if is_transient(exit_code) else "retrying will not help; fix the cause"
        super().__init__(f"stage {stage!r} failed (exit status {exit_code}; {hint}):\n{tail}")


def dvc_graph(root: Path = PROJECT_ROOT) -> tuple[list[str], dict[str, set[str]]]:
    """The stages of ``dvc.yaml`` in run order, and which stages each one reads from."""
    from dvc.repo import Repo

    with Repo(str(root)) as repo:
        graph = repo.index.graph
        stages = [s for s in repo.index.stages if s.addressing != "dvc.yaml"]
        declared = [s.addressing for s in stages]
        edges = {s.addressing: {d.addressing for d in graph.successors(s)} for s in stages}
    return stage_order(edges, declared), edges


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


def retry_if_transient(task: Any, task_run: Any, state: Any) -> bool:
    """Prefect's retry condition: retry a stage only when its failure can pass."""
    error = state.data
    return isinstance(error, StageFailed) and is_transient(error.exit_code)


@task(name="dvc-repro", retry_condition_fn=retry_if_transient)
def repro_stage(stage: str, force: bool, env: dict[str, str], root: Path = PROJECT_ROOT) -> str:
    """``dvc repro --single-item <stage>`` in the DVC project ``root``, its output streamed
    into this task's log; ``ran`` or ``skipped``."""
    logger = get_run_logger()
    command = [sys.executable, "-m", "dvc", "repro", "--single-item", stage] + (["--force"] if force else [])
    logger.info("$ %s", " ".join(command[1:]))
    lines: list[str] = []
    with subprocess.Popen(
        command, cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    ) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            line = line.rstrip()
            lines.append(line)
            if line.strip():
                logger.info(line)
        code = proc.wait()
    output = "\n".join(lines)
    if code != 0:
        raise StageFailed(stage, failed_exit_code(output), "\n".join(lines[-30:]))
    outcome = stage_outcome(stage, output)
    logger.info("stage %s: %s", stage, "ran" if outcome == "ran" else "up to date, skipped")
    return outcome


@task(name="set-params")
def set_params_task(overrides: list[str]) -> None:
    from dvc.exceptions import DvcException
    from dvc.utils.hydra import apply_overrides

    try:
        apply_overrides(PROJECT_ROOT / PARAMS_FILE, overrides)
    except DvcException as err:
        raise PipelineError(
            f"set_params {overrides}: {err}; every KEY must already exist in params.yaml (e.g. split.seed=7)"
        ) from None
    get_run_logger().info("params.yaml: set %s", ", ".join(overrides))


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
        set_params_task(overrides)
    params = read_project_params(PARAMS_FILE)
    order, edges = dvc_graph()
    stages = with_upstream(order, edges, targets) if targets else order
    retries = get(params, "pipeline.retries") or {}
    unknown = sorted(set(retries) - set(order))
    if unknown:
        raise ParamsError(f"params.yaml: pipeline.retries names unknown stage(s) {unknown}; stages: {order}")
    delay = get_int(params, "pipeline.retry_delay_s")
    flow_run_id = str(flow_run.id) if flow_run.id else None

    experiment_id = start_experiment(params)
    tags = run_tags(params) | {"pipeline.kind": "prefect", "pipeline.stages": ",".join(stages)}
    name = f"pipeline {flow_run.name}" if flow_run.name else "pipeline"
    outcomes: dict[str, str] = {}
    with mlflow.start_run(experiment_id=experiment_id, run_name=name, tags=tags) as parent:
        mlflow.log_params({"set_params": " ".join(overrides) or "-", "targets": ",".join(stages), "force": force})
        link_prefect_to_mlflow(parent, None)
        env = stage_env(parent.info.run_id, flow_run_id)
        logger.info("Stages, in order: %s (MLflow run %s)", " -> ".join(stages), parent.info.run_id)
        for stage in stages:
            tries = get_int(params, f"pipeline.retries.{stage}") if stage in retries else 0
            run = repro_stage.with_options(name=f"dvc-repro-{stage}", retries=tries, retry_delay_seconds=delay)
            outcomes[stage] = run(stage, force, env)
            mlflow.set_tag(f"stage.{stage}", outcomes[stage])
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
    except (PipelineError, ParamsError, StageFailed) as err:
        print(f"\nerror: {err}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
