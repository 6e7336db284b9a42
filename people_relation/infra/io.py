"""Project paths and crash-safe writes: an output is either complete or absent."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from people_relation.params import load_params
from people_relation.settings import PARAMS_FILE, Settings, find_project_root, parse_settings

log = logging.getLogger(__name__)

PROJECT_ROOT = find_project_root()


def project_path(value: str | Path, root: Path = PROJECT_ROOT) -> Path:
    """``value`` as an absolute path; relative values are taken from the project root."""
    path = Path(value).expanduser()
    return path if path.is_absolute() else (root / path).resolve()


def read_project_params(params_file: str | Path = PARAMS_FILE) -> dict[str, Any]:
    """The params tree, checked whole first: an unknown key, a wrong type or a value out of
    range fails here, before any work, naming the file and the key."""
    params = load_params(project_path(params_file))
    parse_settings(params, str(params_file))
    return params


def read_settings(params_file: str | Path = PARAMS_FILE, run: str | None = None) -> Settings:
    """The params file as typed, frozen settings of run ``run`` (default: the first of ``runs``)."""
    return parse_settings(load_params(project_path(params_file)), str(params_file), run=run)


@contextmanager
def staged_dir(target: Path) -> Iterator[Path]:
    """A scratch directory that replaces ``target`` only when the block succeeds.

    On any error the scratch directory is removed and ``target`` is left as it was.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        yield scratch
    except BaseException:
        shutil.rmtree(scratch, ignore_errors=True)
        raise
    replace_dir(scratch, target)


def replace_dir(source: Path, target: Path) -> None:
    """Move ``source`` to ``target``, swapping out any old ``target`` in one rename."""
    if target.exists():
        old = target.with_name(f".{target.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(target, old)
        os.replace(source, target)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(source, target)


def fingerprint(*parts: Any) -> str:
    """A short hash of settings and inputs; a folder path stands for its files' contents."""
    digest = hashlib.sha256()
    for part in parts:
        if isinstance(part, Path) and part.is_dir():
            for file in sorted(p for p in part.rglob("*") if p.is_file()):
                digest.update(file.name.encode())
                with file.open("rb") as fh:  # streamed: a model shard can be 15 GB
                    digest.update(hashlib.file_digest(fh, "sha256").digest())
        else:
            digest.update(json.dumps(part, sort_keys=True, default=str).encode())
    return digest.hexdigest()[:16]


def write_json(path: Path, payload: Any) -> None:
    path.write_text(json.dumps(payload, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")


def read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def read_numeric_csv(path: Path) -> list[dict[str, float]]:
    """The numeric cells of a CSV file, one dict per row (empty and text cells left out)."""
    import csv
    import math

    def numbers(row: dict[str, str]) -> dict[str, float]:
        out = {}
        for key, value in row.items():
            try:
                number = float(value)
            except (TypeError, ValueError):
                continue
            if math.isfinite(number):
                out[key] = number
        return out

    with path.open(encoding="utf-8", newline="") as fh:
        return [numbers(row) for row in csv.DictReader(fh)]


def write_json_atomic(path: Path, payload: Any) -> None:
    """``write_json`` through a temporary file: a reader sees the old file or the new one."""
    tmp = path.with_name(f".{path.name}.tmp")
    write_json(tmp, payload)
    os.replace(tmp, path)


def write_jsonl(path: Path, rows: Iterable[dict[str, Any]]) -> int:
    count = 0
    with path.open("w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
            count += 1
    return count


def read_jsonl(path: Path, convert: Callable[[dict[str, Any]], Any] = lambda r: r) -> list[Any]:
    with path.open(encoding="utf-8") as fh:
        return [convert(json.loads(line)) for line in fh if line.strip()]


CLAIM = "FINGERPRINT"  # the settings fingerprint a checkpoints folder belongs to


def claim_checkpoint_dir(directory: Path, fingerprint: str) -> None:
    """Keep ``directory``'s checkpoints only if they belong to the same run settings.

    A checkpoint written under other settings (other params, another start model) must
    not be resumed: it is removed, with a log line saying why. With several training
    processes only the main one may call this (see ``people_relation.training.grpo_process``).
    """
    if directory.exists() and not holds_claim(directory, fingerprint):
        log.info("Discarding checkpoints in %s: they were made with other settings", directory)
        shutil.rmtree(directory)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / CLAIM).write_text(fingerprint + "\n")


def holds_claim(directory: Path, fingerprint: str) -> bool:
    """Whether ``directory`` is claimed (:func:`claim_checkpoint_dir`) for ``fingerprint``."""
    marker = directory / CLAIM
    return marker.is_file() and marker.read_text().strip() == fingerprint
