"""Run a step flow as a command: ``python -m flows.<step> [--params-file FILE] [...]``.

Bad data, bad params, or a server that cannot start or stopped answering end the command
with status 1 and one plain message that says what is wrong, where, and how to fix it;
anything else keeps its full traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any

from people_relation.dataset import DataError
from people_relation.params import ParamsError
from tasks.client import EvaluationInterrupted
from tasks.server import ServerError

# Failures whose message says everything (what, where, how to fix): no traceback needed.
USER_ERRORS = (DataError, ParamsError, ServerError, EvaluationInterrupted)


def run(
    flow: Callable[..., Any],
    argv: list[str] | None = None,
    add_arguments: Callable[[argparse.ArgumentParser], None] = lambda parser: None,
    instead: Callable[[argparse.Namespace], bool] = lambda args: False,
) -> None:
    """Parse the command line and run ``flow``, unless ``instead(args)`` handled it (a dry run)."""
    parser = argparse.ArgumentParser(prog=f"python -m flows.{getattr(flow, 'name', 'step')}")
    parser.add_argument("--params-file", default="params.yaml", help="params file (default: params.yaml)")
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        if not instead(args):
            flow(**vars(args))
    except USER_ERRORS as err:
        print(f"\nerror: {err}", file=sys.stderr)
        sys.exit(1)
