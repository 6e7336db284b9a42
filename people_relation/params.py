"""Load ``params.yaml`` as a plain tree, with clear errors (:mod:`people_relation.settings`
checks and types it).

The file is read as DVC reads it (YAML 1.2, ruamel): ``dvc exp run -S`` and the pipeline
flow's ``set_params`` rewrite it with ruamel, which writes ``"off"`` as a bare ``off`` and
``2e-5`` as ``2e-05``; YAML 1.1 readers (PyYAML) would see ``False`` and a string there.
Numbers written as strings are still accepted by the typed settings, for files written by
other tools.

A profile may name another as its ``base`` and list only what differs: :func:`load_params`
returns every profile resolved (the base's tree with the profile's values laid over it,
key by key; a list or a scalar replaces the base's whole), so everything downstream sees
complete profiles. ``python -m flows.train --dry-run`` prints one resolved.
"""

from __future__ import annotations

import copy
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
    return resolve_profiles(params, str(path))


BASE_KEY = "base"


def overlay(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """``base`` with ``over`` laid on it: mappings merge key by key, anything else replaces."""
    out = copy.deepcopy(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = overlay(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def resolve_profiles(params: dict[str, Any], source: str = "params.yaml") -> dict[str, Any]:
    """The params tree with each profile's ``base`` chain laid out into a complete profile
    (without the ``base`` key). An unknown base or a cycle is a ParamsError."""
    profiles = params.get("profiles")
    if not isinstance(profiles, dict):
        return params
    resolved: dict[str, dict[str, Any]] = {}

    def resolve(name: str, chain: tuple[str, ...]) -> dict[str, Any]:
        if name in resolved:
            return resolved[name]
        own = profiles[name]
        if not isinstance(own, dict):
            return own  # the typed settings name what is wrong with it
        own = {k: v for k, v in own.items() if k != BASE_KEY}
        base = profiles[name].get(BASE_KEY)
        if base is None:
            resolved[name] = copy.deepcopy(own)
            return resolved[name]
        if base not in profiles:
            raise ParamsError(f"{source}: profiles.{name}.base is {base!r}; the profiles are {', '.join(profiles)}")
        if base in chain:
            raise ParamsError(f"{source}: profiles.{name}.base: a cycle ({' -> '.join((*chain, base))})")
        resolved[name] = overlay(resolve(base, (*chain, base)), own)
        return resolved[name]

    out = dict(params)
    out["profiles"] = {name: resolve(name, (name,)) for name in profiles}
    return out
