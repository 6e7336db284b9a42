"""Load ``params.yaml`` and read values from it with clear errors.

The file is read as DVC reads it (YAML 1.2, ruamel): ``dvc exp run -S`` and the pipeline
flow's ``set_params`` rewrite it with ruamel, which writes ``"off"`` as a bare ``off`` and
``2e-5`` as ``2e-05``; YAML 1.1 readers (PyYAML) would see ``False`` and a string there.
Numbers written as strings are still accepted below, for files written by other tools.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML, YAMLError


class ParamsError(ValueError):
    """A parameter is missing or has the wrong type; the message names it."""


def load_params(path: Path) -> dict[str, Any]:
    try:
        with path.open(encoding="utf-8") as fh:
            params = YAML(typ="safe").load(fh)
    except FileNotFoundError:
        raise ParamsError(f"{path}: no such params file") from None
    except YAMLError as err:
        raise ParamsError(f"{path}: not valid YAML: {err}") from None
    if not isinstance(params, dict):
        raise ParamsError(f"{path}: expected a mapping at the top level")
    return params


def get(params: Mapping[str, Any], dotted: str) -> Any:
    """``get(p, "split.seed")`` or a ParamsError naming the missing key."""
    node: Any = params
    for part in dotted.split("."):
        if not isinstance(node, Mapping) or part not in node:
            raise ParamsError(f"params.yaml: missing parameter {dotted!r}")
        node = node[part]
    return node


def _number(dotted: str, value: Any, kind: type) -> Any:
    # `dvc exp run -S x=2e-5` can write numbers back as strings; accept both.
    if isinstance(value, bool):
        raise ParamsError(f"params.yaml: {dotted} must be a number, got {value!r}")
    try:
        number = kind(float(value)) if kind is int and isinstance(value, str) else kind(value)
    except (TypeError, ValueError):
        raise ParamsError(f"params.yaml: {dotted} must be a number, got {value!r}") from None
    if kind is int and isinstance(value, (float, str)) and float(value) != number:
        raise ParamsError(f"params.yaml: {dotted} must be a whole number, got {value!r}")
    return number


def get_int(params: Mapping[str, Any], dotted: str) -> int:
    return _number(dotted, get(params, dotted), int)


def get_float(params: Mapping[str, Any], dotted: str) -> float:
    return _number(dotted, get(params, dotted), float)


def get_str(params: Mapping[str, Any], dotted: str, choices: tuple[str, ...] | None = None) -> str:
    value = get(params, dotted)
    if not isinstance(value, str) or not value:
        raise ParamsError(f"params.yaml: {dotted} must be a non-empty string, got {value!r}")
    if choices and value not in choices:
        raise ParamsError(f"params.yaml: {dotted} is {value!r}; use one of {', '.join(choices)}")
    return value
