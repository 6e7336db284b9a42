"""What the Prefect pipeline flow needs to know about DVC's pipeline and its output.

Pure functions: the stage order from ``dvc.yaml``'s dependency graph, what ``dvc repro``
did to a stage, and whether a failed stage may pass when tried again.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence

from people_relation.errors import EXIT_PERMANENT, EXIT_REFUSED, EXIT_TRANSIENT, PermanentError, RefusedInput

_EXITED = re.compile(r"failed to run: .*?, exited with (-?\d+)")


class PipelineError(PermanentError):
    """The pipeline cannot be run as it is defined; the message says why and what to change."""


class RequestRefused(RefusedInput, PipelineError):
    """The run was asked for something the pipeline does not have (a stage, a params key, a
    ``KEY=VALUE``); nothing ran. The message names it and what there is instead."""


def stage_order(edges: Mapping[str, Iterable[str]], declared: Sequence[str]) -> list[str]:
    """Stages in an order that runs every stage after the stages it depends on.

    ``edges[stage]`` are the stages whose outputs ``stage`` reads. Ties keep the order of
    ``dvc.yaml`` (``declared``), so the order is stable and reads like the file.
    """
    position = {name: i for i, name in enumerate(declared)}
    pending = {name: set(edges.get(name, ())) for name in declared}
    order: list[str] = []
    while pending:
        ready = sorted((n for n, deps in pending.items() if not deps - set(order)), key=position.__getitem__)
        if not ready:
            raise PipelineError(f"dvc.yaml: the stages {sorted(pending)} depend on each other in a cycle")
        order.append(ready[0])
        del pending[ready[0]]
    return order


def with_upstream(order: Sequence[str], edges: Mapping[str, Iterable[str]], targets: Iterable[str]) -> list[str]:
    """The stages ``dvc repro <targets>`` would consider: the targets and all they depend on, in order."""
    unknown = sorted(set(targets) - set(order))
    if unknown:
        raise RequestRefused(f"unknown stage(s) {unknown}; dvc.yaml has {list(order)}")
    wanted: set[str] = set()
    todo = list(targets)
    while todo:
        stage = todo.pop()
        if stage not in wanted:
            wanted.add(stage)
            todo.extend(edges.get(stage, ()))
    return [s for s in order if s in wanted]


def stage_outcome(stage: str, output: str) -> str:
    """``ran`` or ``skipped`` (up to date), from what ``dvc repro --single-item`` printed."""
    if f"Running stage '{stage}'" in output:
        return "ran"
    if f"Stage '{stage}' didn't change, skipping" in output or "Data and pipelines are up to date" in output:
        return "skipped"
    raise PipelineError(f"could not tell from DVC's output whether stage {stage!r} ran:\n{output[-2000:]}")


def failed_exit_code(output: str) -> int | None:
    """The exit status of the stage command that made ``dvc repro`` fail, if it says."""
    found = _EXITED.findall(output)
    return int(found[-1]) if found else None


def is_transient(exit_code: int | None) -> bool:
    return exit_code == EXIT_TRANSIENT


def stage_exit_status(exit_code: int | None) -> int:
    """The status the pipeline ends with when a stage failed with ``exit_code`` (after its
    retries): the stage's own when it is one of the contract's (75: may pass when run again,
    2: refused input), else 1 (bad params or data, or a crash: running it again cannot help)."""
    return exit_code if exit_code in (EXIT_TRANSIENT, EXIT_REFUSED) else EXIT_PERMANENT


def check_overrides(overrides: Iterable[str]) -> list[str]:
    """``dvc exp run -S`` style ``key.path=value`` strings, checked for the ``=``."""
    checked = []
    for item in overrides:
        key, sep, _ = str(item).partition("=")
        if not sep or not key.strip():
            raise RequestRefused(f"set_params: {item!r} is not KEY=VALUE (for example split.seed=7)")
        checked.append(str(item))
    return checked
