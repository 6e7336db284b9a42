"""Read and validate a task's data: CSV files (a header naming the task's input fields and
``label``), or rows from any source.

Every row is checked against the task (header, non-empty fields, a name in its text where
the task says so, a known label, no chat-template control token).
Problems are collected across the whole file and raised together as :class:`DataError`,
each naming the file, the line and what is wrong, so one run shows everything to fix.
"""

from __future__ import annotations

import csv
import hashlib
import io
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from people_relation.errors import PermanentError
from people_relation.task import LABEL, Task

META: tuple[str, ...] = ("id", "split", "line")  # what a written row carries besides its inputs and label
SPLITS: tuple[str, ...] = ("train", "test")
MAX_PROBLEMS_SHOWN = 20


class DataError(PermanentError):
    """The data is missing or malformed; the message says where and how to fix it."""


@dataclass(frozen=True)
class Example:
    """One row: where it comes from, its input fields (in the task's order) and its gold label
    (empty for a query)."""

    id: str
    split: str
    line: int
    inputs: Mapping[str, str]
    label: str

    __hash__ = None  # type: ignore[assignment]  # the inputs are a dict

    def __getitem__(self, field: str) -> str:
        return self.inputs[field]

    @property
    def key(self) -> tuple[str, ...]:
        """What the model sees: the input values, in order."""
        return tuple(self.inputs.values())

    def with_inputs(self, **changes: str) -> Example:
        return replace(self, inputs={**self.inputs, **changes})

    def to_dict(self) -> dict[str, object]:
        """The row as written: id, split, line, the input fields, then the label."""
        return {"id": self.id, "split": self.split, "line": self.line, **self.inputs, LABEL: self.label}

    @classmethod
    def from_dict(cls, row: Mapping[str, Any]) -> Example:
        """A row as :meth:`to_dict` writes it: every key but id, split, line and label is an input."""
        inputs = {k: str(v) for k, v in row.items() if k not in META and k != LABEL}
        return cls(
            id=str(row["id"]), split=str(row["split"]), line=int(row["line"]), inputs=inputs, label=str(row[LABEL])
        )


def _format_problems(where: str, problems: list[str]) -> str:
    shown = problems[:MAX_PROBLEMS_SHOWN]
    more = len(problems) - len(shown)
    lines = [f"{where}: {len(problems)} problem(s) found:"] + [f"  - {p}" for p in shown]
    if more:
        lines.append(f"  ... and {more} more")
    return "\n".join(lines)


def columns(task: Task) -> tuple[str, ...]:
    """The columns of a data file of ``task``: its input fields, then ``label``."""
    return (*task.fields, LABEL)


def row_problems(row: Mapping[str, object], task: Task) -> list[str]:
    """What is wrong with one row (empty list when it is valid)."""
    problems = [
        f"column {task.label_column if c == LABEL else c!r} is empty"
        for c in columns(task)
        if not isinstance(row.get(c), str) or not str(row[c]).strip()
    ]
    if problems:
        return problems
    problems = task.input_problems(row)
    if problem := task.label_problem(row[LABEL]):
        problems.append(problem)
    return problems


def validate_rows(
    rows: Iterable[tuple[int, Mapping[str, object]]],
    split: str,
    where: str,
    task: Task,
    problems: list[str] | None = None,
) -> list[Example]:
    """Turn ``(line, row)`` pairs into examples, or raise one DataError listing every bad row.

    ``problems`` carries structural problems already found by the reader (such as a
    wrong number of fields), so they are reported together with the row problems.
    """
    examples: list[Example] = []
    problems = list(problems or [])
    for line, row in rows:
        bad = row_problems(row, task)
        if bad:
            problems.extend(f"line {line}: {p}" for p in bad)
            continue
        examples.append(
            Example(
                id=f"{split}-{len(examples) + 1:05d}",
                split=split,
                line=line,
                inputs={f: str(row[f]) for f in task.fields},
                label=str(row[LABEL]),
            )
        )
    if problems:
        raise DataError(_format_problems(where, sorted(problems, key=_line_of)))
    if not examples:
        raise DataError(f"{where}: no data rows (the file has a header at most)")
    return examples


def _line_of(problem: str) -> int:
    head = problem.split(":", 1)[0]
    return int(head[5:]) if head.startswith("line ") and head[5:].isdigit() else 0


def decode_csv_bytes(raw: bytes, where: str, task: Task) -> str:
    """UTF-8 text of a CSV file (a byte-order mark is allowed), or a DataError naming the line."""
    if not raw.strip():
        expected = ",".join((*task.fields, task.label_column))
        raise DataError(f"{where}: the file is empty; expected a header {expected} and data rows")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = raw[: err.start].count(b"\n") + 1
        raise DataError(
            f"{where}: line {line}: not valid UTF-8 (byte {raw[err.start]:#04x} at offset {err.start}); "
            "re-save the file as UTF-8"
        ) from None


def parse_csv_text(content: str, split: str, where: str, task: Task) -> list[Example]:
    """Validate CSV text whose header names the task's input fields and its label column
    (``label`` unless the task's data says; other columns are ignored)."""
    expected = (*task.fields, task.label_column)
    reader = csv.reader(io.StringIO(content, newline=""))
    try:
        header = next(reader)
    except StopIteration:
        raise DataError(f"{where}: the file is empty; expected a header {','.join(expected)}") from None
    header = [h.strip() for h in header]
    missing = [c for c in expected if c not in header]
    if missing:
        raise DataError(
            f"{where}: line 1: header {','.join(header)!r} lacks column(s) {', '.join(missing)}; "
            f"expected {','.join(expected)} (the task's input fields and label column)"
        )
    index = {c: header.index(c) for c in expected}
    rows: list[tuple[int, Mapping[str, object]]] = []
    problems: list[str] = []
    line = reader.line_num + 1
    for record in _records(reader, where):
        if any(cell.strip() for cell in record):
            if len(record) != len(header):
                problems.append(
                    f"line {line}: {len(record)} fields where the header has {len(header)}; "
                    "quote fields that contain commas"
                )
            else:
                rows.append((line, {LABEL if c == task.label_column else c: record[i] for c, i in index.items()}))
        line = reader.line_num + 1
    return validate_rows(rows, split, where, task, problems)


def _records(reader: csv._reader, where: str) -> Iterable[list[str]]:
    try:
        yield from reader
    except csv.Error as err:
        raise DataError(f"{where}: line {reader.line_num}: malformed CSV ({err})") from None


def read_csv_file(path: Path, split: str, task: Task) -> tuple[list[Example], str]:
    """Validated examples of one CSV file and the SHA-256 of its bytes."""
    where = str(path)
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise DataError(f"{where}: cannot read the file ({err.strerror})") from None
    examples = parse_csv_text(decode_csv_bytes(raw, where, task), split, where, task)
    return examples, hashlib.sha256(raw).hexdigest()


def label_balanced(examples: list[Example], seed: int, labels: list[str]) -> list[Example]:
    """As many rows as ``examples``, drawn with replacement so that every label present
    is equally frequent (a label first, uniformly, then one of its rows), in a seeded order.

    Training prompts in their natural proportions pull a policy towards the majority label
    (the context-free way to earn the label reward); balanced, no label is worth more than
    another unless the sentence says so. The rewards are unchanged. ``labels``: the task's, in order.
    """
    import random

    by_label: dict[str, list[Example]] = {}
    for e in examples:
        by_label.setdefault(e.label, []).append(e)
    labels = [lab for lab in labels if lab in by_label]
    rng = random.Random(seed)
    return [rng.choice(by_label[rng.choice(labels)]) for _ in examples]
