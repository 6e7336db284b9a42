"""Run a step flow as a command: ``python -m flows.<step> [--params-file FILE] [...]``.

Every command keeps the exit-status contract of :mod:`people_relation.errors`: bad data or
bad params end it with status 1 and one plain message that says what is wrong, where, and how
to fix it (retrying cannot help); a server that could not start or stopped answering ends it
with status 75 (EX_TEMPFAIL: trying again may work, and a re-run resumes). Anything else
keeps its full traceback.

When the Prefect ``pipeline`` flow runs the step (through ``dvc repro``), the step's own
flow run is tagged ``pipeline-run:<its flow-run id>`` so the UI shows them together.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from contextlib import nullcontext
from typing import Any

from people_relation.errors import exit_status

PIPELINE_FLOW_RUN_ENV = "PEOPLE_RELATION_PIPELINE_FLOW_RUN_ID"


def pipeline_tags() -> Any:
    """Prefect tags linking this step's flow run to the pipeline flow run that started it."""
    run_id = os.environ.get(PIPELINE_FLOW_RUN_ENV)
    if not run_id:
        return nullcontext()
    from prefect import tags

    return tags("pipeline", f"pipeline-run:{run_id}")


def run(
    flow: Callable[..., Any],
    argv: list[str] | None = None,
    add_arguments: Callable[[argparse.ArgumentParser], None] = lambda parser: None,
    instead: Callable[[argparse.Namespace], bool] = lambda args: False,
) -> None:
    """Parse the command line and run ``flow``, unless ``instead(args)`` handled it (a dry run)."""
    import inspect

    parser = argparse.ArgumentParser(prog=f"python -m flows.{getattr(flow, 'name', 'step')}")
    parser.add_argument("--params-file", default="params.yaml", help="params file (default: params.yaml)")
    if "run" in inspect.signature(getattr(flow, "fn", flow)).parameters:
        parser.add_argument("--run", default=None, help="the run of params.yaml's runs (default: the first)")
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        if not instead(args):
            with pipeline_tags():
                flow(**vars(args))
    except Exception as err:
        status = exit_status(err)
        if status is None:  # not one of ours: a bug, whose traceback shows where
            raise
        # the message says everything (what, where, how to fix): no traceback needed
        print(f"\nerror: {err}", file=sys.stderr)
        sys.exit(status)
