"""Run a step flow as a command: ``python -m flows.<step> [--params-file FILE]``.

Bad data or bad params end the command with status 1 and one plain message that says
what is wrong, where, and how to fix it; anything else keeps its full traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any

from people_relation.dataset import DataError
from people_relation.params import ParamsError

USER_ERRORS = (DataError, ParamsError)


def run(flow: Callable[..., Any], argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog=f"python -m flows.{getattr(flow, 'name', 'step')}")
    parser.add_argument("--params-file", default="params.yaml", help="params file (default: params.yaml)")
    args = parser.parse_args(argv)
    try:
        flow(params_file=args.params_file)
    except USER_ERRORS as err:
        print(f"\nerror: {err}", file=sys.stderr)
        sys.exit(1)
