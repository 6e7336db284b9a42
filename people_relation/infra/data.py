"""Find, load and validate the dataset; write the validated copy and its report."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from people_relation.dataset import SPLITS, DataError, Example, read_csv_file, validate_rows
from people_relation.infra.io import project_path, read_jsonl, write_json, write_jsonl
from people_relation.settings import Data
from people_relation.task import Task

log = logging.getLogger(__name__)


class SourceUnavailable(DataError):
    """The source could not be reached or read at all (as opposed to holding bad rows)."""


@dataclass(frozen=True)
class LoadedData:
    splits: dict[str, list[Example]]
    provenance: dict[str, Any] = field(default_factory=dict)


def local_files(data: Data) -> dict[str, Path]:
    folder = project_path(data.local_dir)
    return {split: folder / getattr(data.files, split) for split in SPLITS}


def load_local(task: Task, files: dict[str, Path], configured: dict[str, str]) -> LoadedData:
    """Rows of the local files; provenance names them as configured, so it is the same on every clone."""
    splits, hashes = {}, {}
    for split, path in files.items():
        splits[split], hashes[split] = read_csv_file(path, split, task)
    return LoadedData(splits=splits, provenance={"kind": "local", "files": configured, "sha256": hashes})


def load_hub(task: Task, hub_id: str, revision: str) -> LoadedData:
    """The dataset through ``datasets``; rows validated exactly like the local files."""
    import datasets  # slow to import, only needed for the hub

    try:
        dataset = datasets.load_dataset(hub_id, revision=revision)
    except Exception as err:  # the hub raises many types: offline, not found, auth
        raise SourceUnavailable(
            f"hub dataset {hub_id}@{revision}: could not load it ({type(err).__name__}: {err})"
        ) from err
    splits = {}
    for split in SPLITS:
        if split not in dataset:
            raise DataError(f"hub dataset {hub_id}@{revision}: has no {split!r} split (found {', '.join(dataset)})")
        # line numbers as in the CSV file: the header is line 1
        rows = ((i + 2, row) for i, row in enumerate(dataset[split]))
        splits[split] = validate_rows(rows, split, f"hub dataset {hub_id}@{revision} [{split}]", task)
    return LoadedData(
        splits=splits,
        provenance={
            "kind": "hub",
            "hub_id": hub_id,
            "revision": revision,
            "fingerprints": {s: dataset[s]._fingerprint for s in SPLITS},
        },
    )


def find_dataset(task: Task, data: Data) -> LoadedData:
    """Load from the configured source; ``auto`` tries the local folder, then the hub.

    Bad rows in a source that exists always stop the run: falling back to another copy
    would hide the problem.
    """
    files = local_files(data)
    hub_id, revision = data.hub_id, data.hub_revision
    looked: list[str] = []
    if data.source in ("auto", "local"):
        missing = [str(p) for p in files.values() if not p.is_file()]
        if not missing:
            log.info("Loading the local dataset from %s", files["train"].parent)
            configured = {split: f"{data.local_dir}/{getattr(data.files, split)}" for split in SPLITS}
            return load_local(task, files, configured)
        looked.append(f"local folder {files['train'].parent}: missing {', '.join(missing)}")
    if data.source in ("auto", "hub"):
        log.info("Loading the hub dataset %s@%s", hub_id, revision)
        try:
            return load_hub(task, hub_id, revision)
        except SourceUnavailable as err:
            looked.append(str(err))
    raise DataError(
        "no dataset found. Looked in:\n"
        + "\n".join(f"  - {place}" for place in looked)
        + "\nPoint the pipeline at the data: set data.local_dir in params.yaml to a folder with "
        f"train.csv and test.csv (columns {','.join((*task.fields, 'label'))}), or run "
        "`dvc exp run -S data.local_dir=/path/to/folder`; or give the hub access and data.source: hub."
    )


def example_from_dict(row: dict[str, Any]) -> Example:
    return Example.from_dict(row)


def write_examples(path: Path, examples: list[Example]) -> int:
    return write_jsonl(path, (e.to_dict() for e in examples))


def read_examples(path: Path) -> list[Example]:
    if not path.is_file():
        raise DataError(f"{path}: missing; run the stage that writes it first (`dvc repro`)")
    return read_jsonl(path, example_from_dict)


def write_provenance(path: Path, provenance: dict[str, Any], counts: dict[str, int]) -> None:
    write_json(path, provenance | {"rows": counts})
