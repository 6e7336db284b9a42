"""Find, load and validate a task's data; write the validated copy and its report.

The task file says what the data is (``data`` in it): CSV files with a header naming the
input fields and ``label`` (a train file and, optionally, a published test file; or the same
rows as a hub dataset), or ``lines`` files, one per label and one text a line, in a folder or
inside an installed package (its version and each file's SHA-256 checked).
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from people_relation.dataset import DataError, Example, read_csv_file, validate_rows
from people_relation.infra.io import project_path, read_jsonl, write_json, write_jsonl
from people_relation.settings import Data
from people_relation.task import CsvData, LinesData, Task

log = logging.getLogger(__name__)


class SourceUnavailable(DataError):
    """The source could not be reached or read at all (as opposed to holding bad rows)."""


@dataclass(frozen=True)
class LoadedData:
    splits: dict[str, list[Example]]
    provenance: dict[str, Any] = field(default_factory=dict)


def local_folder(task: Task, data: Data) -> tuple[Path, str]:
    """The folder of the task's files (params.yaml's ``data.local_dir`` wins over the task
    file's), and how it was configured (the same on every clone)."""
    configured = data.local_dir or getattr(task.data, "local_dir", None)
    if configured is None:
        raise DataError(f"task {task.name}: no data folder: set data.local_dir in the task file or in params.yaml")
    return project_path(configured), configured


def csv_files(spec: CsvData, folder: Path) -> dict[str, Path]:
    files = {"train": spec.files.train} | ({"test": spec.files.test} if spec.files.test else {})
    return {split: folder / name for split, name in files.items()}


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
    for split in ("train", "test"):
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
            "fingerprints": {s: dataset[s]._fingerprint for s in splits},
        },
    )


def find_dataset(task: Task, data: Data) -> LoadedData:
    """The task's rows from its configured source: CSV (``auto`` tries the local folder, then
    the hub) or ``lines`` files.

    Bad rows in a source that exists always stop the run: falling back to another copy
    would hide the problem.
    """
    if isinstance(task.data, LinesData):
        return load_lines(task, task.data, data)
    spec = task.data
    looked: list[str] = []
    if data.source in ("auto", "local"):
        folder, configured = local_folder(task, data)
        files = csv_files(spec, folder)
        missing = [str(p) for p in files.values() if not p.is_file()]
        if not missing:
            log.info("Loading the local dataset from %s", folder)
            names = {split: f"{configured}/{path.name}" for split, path in files.items()}
            return load_local(task, files, names)
        looked.append(f"local folder {folder}: missing {', '.join(missing)}")
    if data.source in ("auto", "hub") and spec.hub_id:
        log.info("Loading the hub dataset %s@%s", spec.hub_id, spec.hub_revision)
        try:
            return load_hub(task, spec.hub_id, spec.hub_revision)
        except SourceUnavailable as err:
            looked.append(str(err))
    columns = ",".join((*task.fields, task.label_column))
    names = " and ".join(n for n in (spec.files.train, spec.files.test) if n)
    raise DataError(
        "no dataset found. Looked in:\n"
        + "\n".join(f"  - {place}" for place in looked)
        + f"\nPoint the pipeline at the data: set data.local_dir in params.yaml to a folder with {names} "
        f"(columns {columns}), or run `dvc exp run -S data.local_dir=/path/to/folder`"
        + ("; or give the hub access and data.source: hub." if spec.hub_id else ".")
    )


def lines_folder(spec: LinesData, task: Task, data: Data) -> tuple[Path, dict[str, Any]]:
    """Where the ``lines`` files are: an installed package (its version checked) or a folder."""
    if spec.package is None:
        folder, configured = local_folder(task, data)
        return folder, {"kind": "local", "folder": configured}
    try:
        installed = importlib.metadata.version(spec.package)
    except importlib.metadata.PackageNotFoundError:
        raise DataError(
            f"task {task.name}: data.package {spec.package} is not installed (make setup installs it)"
        ) from None
    if installed != spec.version:
        raise DataError(
            f"task {task.name}: data.package {spec.package} is {installed}, the task file pins {spec.version}: "
            "its files may differ; install the pinned version"
        )
    module = importlib.import_module(spec.package.replace("-", "_"))
    return Path(module.__file__).parent, {"kind": "package", "package": spec.package, "version": spec.version}


def load_lines(task: Task, spec: LinesData, data: Data) -> LoadedData:
    """Every label's file, one text a line, validated like CSV rows; all rows go to ``train``
    (the split stage draws the test rows: ``split.strategy: stratified``)."""
    folder, provenance = lines_folder(spec, task, data)
    text_field = task.fields[0]
    if len(task.fields) != 1:
        raise DataError(f"task {task.name}: lines files hold one text a line; the task has inputs {task.fields}")
    rows: list[Example] = []
    hashes, too_long, repeated = {}, {}, {}
    problems: list[str] = []
    for label, source in spec.files.items():
        path = folder / source.file
        try:
            raw = path.read_bytes()
        except OSError as err:
            raise DataError(f"{path}: cannot read the file ({err.strerror})") from None
        digest = hashlib.sha256(raw).hexdigest()
        if source.sha256 and digest != source.sha256:
            raise DataError(
                f"{path}: SHA-256 {digest}, the task file says {source.sha256}: the file changed; check it, "
                f"then update data.files.{label}.sha256"
            )
        hashes[label] = digest
        try:
            text = raw.decode("utf-8-sig")
        except UnicodeDecodeError as err:
            line = raw[: err.start].count(b"\n") + 1
            raise DataError(f"{path}: line {line}: not valid UTF-8; re-save the file as UTF-8") from None
        numbered = [(n, line.strip()) for n, line in enumerate(text.split("\n"), start=1) if line.strip()]
        kept = [(n, line) for n, line in numbered if spec.max_chars is None or len(line) <= spec.max_chars]
        too_long[label] = len(numbered) - len(kept)
        if spec.unique:
            first = {line: n for n, line in reversed(kept)}
            repeated[label] = len(kept) - len(first)
            kept = [(n, line) for n, line in kept if first[line] == n]
        try:
            rows += validate_rows(
                ((n, {text_field: line, "label": label}) for n, line in kept), "train", str(path), task
            )
        except DataError as err:
            problems.append(str(err))
    if problems:
        raise DataError("\n".join(problems))
    rows = [Example(f"train-{i:05d}", e.split, e.line, e.inputs, e.label) for i, e in enumerate(rows, start=1)]
    provenance |= {"files": {label: s.file for label, s in spec.files.items()}, "sha256": hashes}
    provenance |= {"max_chars": spec.max_chars, "left_out_too_long": too_long}
    if spec.unique:
        provenance["left_out_repeated"] = repeated
    return LoadedData(splits={"train": rows}, provenance=provenance)


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
