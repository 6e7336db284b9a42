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

A command works for one of ``runs`` (``--run``, default the first): :func:`resolve_run` lays
that run out into the tree (its task file, its profile, its own ``set`` values, its output
folders under its root), so the typed settings describe one run.
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


def with_values(raw: dict[str, Any], values: dict[str, Any]) -> dict[str, Any]:
    """A copy of the params tree ``raw`` with ``values`` (dotted keys, as ``dvc exp run -S``
    takes them) put in; every key must already exist."""
    out = copy.deepcopy(raw)
    for dotted, value in values.items():
        node, rest = out, dotted
        while True:
            # the longest key that starts the rest: profile names hold dots (qwen2.5-7b)
            key = next((k for k in sorted(node, key=len, reverse=True) if rest == k or rest.startswith(f"{k}.")), None)
            if key is None:
                raise ParamsError(f"params.yaml: no parameter {dotted!r}")
            if rest == key:
                node[key] = copy.deepcopy(value)
                break
            node, rest = node[key], rest[len(key) + 1 :]
            if not isinstance(node, dict):
                raise ParamsError(f"params.yaml: no parameter {dotted!r}")
    return out


# outputs every run shares: the corpus and the pretrained model (one for the project), the MLflow store
SHARED_OUTPUTS = ("corpus.", "pretrain.", "tracking.")


def resolve_run(
    raw: dict[str, Any], run: str | None, output_keys: list[str], source: str = "params.yaml"
) -> dict[str, Any]:
    """The params tree for run ``run`` (default: the first of ``runs``): its ``set`` values put
    in, its task file and profile in ``task`` and ``train.profile``, and the folders of
    ``output_keys`` under its ``root`` (the typed settings check the run's keys)."""
    runs = raw.get("runs")
    if not isinstance(runs, dict) or not runs:
        raise ParamsError(f"{source}: runs: missing; name at least one run (a task file and a profile)")
    for key, where in (("task", "runs.<run>.task"), ("run", "--run")):
        if key in raw:
            raise ParamsError(f"{source}: {key}: not a key of params.yaml; set {where}")
    if isinstance(raw.get("train"), dict) and "profile" in raw["train"]:
        raise ParamsError(f"{source}: train.profile: set the run's profile in runs.<run>.profile")
    name = run or next(iter(runs))
    if name not in runs:
        raise ParamsError(f"{source}: no run {name!r}; the runs are {', '.join(runs)}")
    spec = runs[name] if isinstance(runs[name], dict) else {}
    task, profile, root = spec.get("task"), spec.get("profile"), spec.get("root") or ""
    if not isinstance(task, str) or not isinstance(profile, str):
        raise ParamsError(f"{source}: runs.{name}: a run needs a task (its task file) and a profile")
    roots = [r.get("root") or "" for r in runs.values() if isinstance(r, dict)]
    shared = sorted({r for r in roots if roots.count(r) > 1})
    if shared:
        raise ParamsError(f"{source}: runs: two runs have the root {shared[0]!r}; give each run a folder of its own")
    values = spec.get("set") or {}
    fixed = [k for k in values if k in output_keys or k.startswith((*SHARED_OUTPUTS, "runs", "profiles"))]
    if fixed:
        raise ParamsError(
            f"{source}: runs.{name}.set: {fixed[0]} cannot be set for one run: a run's folders follow its root, "
            "and the corpus, the pretrained model, the MLflow store and the profiles are every run's"
        )
    out = with_values(raw, values)
    out = {"runs": out.pop("runs"), "run": name, "task": task, **out}
    out["train"] = {"profile": profile, **out.get("train", {})}
    if isinstance(root, str) and root and root.endswith("/") and not root.startswith("/"):
        prefixed = {}
        for key in output_keys:
            node: Any = out
            for part in key.split("."):
                node = node.get(part) if isinstance(node, dict) else None
            if isinstance(node, str) and not key.startswith(SHARED_OUTPUTS) and not Path(node).is_absolute():
                prefixed[key] = root + node
        out = with_values(out, prefixed)
    return out
