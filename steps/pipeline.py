"""Tasks of the pipeline flow: bring one DVC stage up to date, and set params as DVC does."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from prefect import get_run_logger, task

from people_relation.infra.io import PARAMS_FILE, PROJECT_ROOT
from people_relation.infra.processes import stream
from people_relation.pipeline import RequestRefused, failed_exit_code, is_transient, stage_exit_status, stage_outcome


class StageFailed(RuntimeError):
    def __init__(self, stage: str, exit_code: int | None, tail: str):
        self.stage, self.exit_code = stage, exit_code
        hint = "a retry may help" if is_transient(exit_code) else "retrying will not help; fix the cause"
        super().__init__(f"stage {stage!r} failed (exit status {exit_code}; {hint}):\n{tail}")

    @property
    def exit_status(self) -> int:
        """What the pipeline command ends with when this is the failure it stops on."""
        return stage_exit_status(self.exit_code)


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

    def show(line: str) -> None:
        lines.append(line)
        if line.strip():
            logger.info(line)

    finished = stream(command, show, cwd=root, env=env, keep=30)
    output = "\n".join(lines)
    if finished.code != 0:
        raise StageFailed(stage, failed_exit_code(output), "\n".join(finished.tail))
    outcome = stage_outcome(stage, output)
    logger.info("stage %s: %s", stage, "ran" if outcome == "ran" else "up to date, skipped")
    return outcome


@task(name="set-params")
def write_params(overrides: list[str]) -> None:
    """Write ``KEY=VALUE`` overrides into params.yaml with DVC's own code (as ``dvc exp run -S``)."""
    from dvc.exceptions import DvcException
    from dvc.utils.hydra import apply_overrides

    try:
        apply_overrides(PROJECT_ROOT / PARAMS_FILE, overrides)
    except DvcException as err:
        raise RequestRefused(
            f"set_params {overrides}: {err}; every KEY must already exist in params.yaml (e.g. split.seed=7)"
        ) from None
    get_run_logger().info("params.yaml: set %s", ", ".join(overrides))
