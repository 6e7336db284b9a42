"""Load ``params.yaml`` as a plain tree, with clear errors (:mod:`people_relation.settings`
checks and types it).

The file is read as DVC reads it (YAML 1.2, ruamel): ``dvc exp run -S`` and the pipeline
flow's ``set_params`` rewrite it with ruamel, which writes ``"off"`` as a bare ``off`` and
``2e-5`` as ``2e-05``; YAML 1.1 readers (PyYAML) would see ``False`` and a string there.
Numbers written as strings are still accepted by the typed settings, for files written by
other tools.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ruamel.yaml import YAML, YAMLError

from people_relation.errors import PermanentError


class ParamsError(PermanentError):
    """A parameter is missing, unknown or has the wrong type; the message names it."""


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
