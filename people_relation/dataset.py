"""Read and validate the dataset: CSV files in the hub's layout, or rows from any source.

Every row is checked (header, non-empty fields, both names in the text, a known label).
Problems are collected across the whole file and raised together as :class:`DataError`,
each naming the file, the line and what is wrong, so one run shows everything to fix.
"""

from __future__ import annotations

import csv
import hashlib
import io
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

from people_relation.errors import PermanentError
from people_relation.labels import LABELS, is_label
from people_relation.prompt import control_token_problem

COLUMNS: tuple[str, ...] = ("text", "people1", "people2", "label")
SPLITS: tuple[str, ...] = ("train", "test")
MAX_PROBLEMS_SHOWN = 20


class DataError(PermanentError):
    """The data is missing or malformed; the message says where and how to fix it."""


@dataclass(frozen=True)
class Example:
    id: str
    split: str
    line: int
    text: str
    people1: str
    people2: str
    label: str

    @property
    def key(self) -> tuple[str, str, str]:
        """What the model sees: the text and the ordered pair of people."""
        return (self.text, self.people1, self.people2)

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def _format_problems(where: str, problems: list[str]) -> str:
    shown = problems[:MAX_PROBLEMS_SHOWN]
    more = len(problems) - len(shown)
    lines = [f"{where}: {len(problems)} problem(s) found:"] + [f"  - {p}" for p in shown]
    if more:
        lines.append(f"  ... and {more} more")
    return "\n".join(lines)


def row_problems(row: Mapping[str, object]) -> list[str]:
    """What is wrong with one row (empty list when it is valid)."""
    problems = []
    for column in COLUMNS:
        value = row.get(column)
        if value is None or not isinstance(value, str) or not value.strip():
            problems.append(f"column {column!r} is empty")
    if problems:
        return problems
    text, p1, p2, label = (str(row[c]) for c in COLUMNS)
    for column, name in (("people1", p1), ("people2", p2)):
        if name not in text:
            problems.append(f"{column} {name!r} does not occur in the text")
    if not is_label(label):
        problems.append(f"label {label!r} is not one of the 14 labels ({', '.join(LABELS)})")
    problems += [m for c, v in (("text", text), ("people1", p1), ("people2", p2)) if (m := control_token_problem(c, v))]
    return problems


def validate_rows(
    rows: Iterable[tuple[int, Mapping[str, object]]],
    split: str,
    where: str,
    problems: list[str] | None = None,
) -> list[Example]:
    """Turn ``(line, row)`` pairs into examples, or raise one DataError listing every bad row.

    ``problems`` carries structural problems already found by the reader (such as a
    wrong number of fields), so they are reported together with the row problems.
    """
    examples: list[Example] = []
    problems = list(problems or [])
    for line, row in rows:
        bad = row_problems(row)
        if bad:
            problems.extend(f"line {line}: {p}" for p in bad)
            continue
        examples.append(
            Example(
                id=f"{split}-{len(examples) + 1:05d}",
                split=split,
                line=line,
                text=str(row["text"]),
                people1=str(row["people1"]),
                people2=str(row["people2"]),
                label=str(row["label"]),
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


def decode_csv_bytes(raw: bytes, where: str) -> str:
    """UTF-8 text of a CSV file (a byte-order mark is allowed), or a DataError naming the line."""
    if not raw.strip():
        raise DataError(f"{where}: the file is empty; expected a header {','.join(COLUMNS)} and data rows")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = raw[: err.start].count(b"\n") + 1
        raise DataError(
            f"{where}: line {line}: not valid UTF-8 (byte {raw[err.start]:#04x} at offset {err.start}); "
            "re-save the file as UTF-8"
        ) from None


def parse_csv_text(content: str, split: str, where: str) -> list[Example]:
    """Validate CSV text with the header ``text,people1,people2,label``."""
    reader = csv.reader(io.StringIO(content, newline=""))
    try:
        header = next(reader)
    except StopIteration:
        raise DataError(f"{where}: the file is empty; expected a header {','.join(COLUMNS)}") from None
    header = [h.strip() for h in header]
    missing = [c for c in COLUMNS if c not in header]
    if missing:
        raise DataError(
            f"{where}: line 1: header {','.join(header)!r} lacks column(s) {', '.join(missing)}; "
            f"expected {','.join(COLUMNS)}"
        )
    index = {c: header.index(c) for c in COLUMNS}
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
                rows.append((line, {c: record[i] for c, i in index.items()}))
        line = reader.line_num + 1
    return validate_rows(rows, split, where, problems)


def _records(reader: csv._reader, where: str) -> Iterable[list[str]]:
    try:
        yield from reader
    except csv.Error as err:
        raise DataError(f"{where}: line {reader.line_num}: malformed CSV ({err})") from None


def read_csv_file(path: Path, split: str) -> tuple[list[Example], str]:
    """Validated examples of one CSV file and the SHA-256 of its bytes."""
    where = str(path)
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise DataError(f"{where}: cannot read the file ({err.strerror})") from None
    examples = parse_csv_text(decode_csv_bytes(raw, where), split, where)
    return examples, hashlib.sha256(raw).hexdigest()


def label_balanced(examples: list[Example], seed: int) -> list[Example]:
    """As many rows as ``examples``, drawn with replacement so that every label present
    is equally frequent (a label first, uniformly, then one of its rows), in a seeded order.

    Training prompts in their natural proportions pull a policy towards the majority label
    (the context-free way to earn the label reward); balanced, no label is worth more than
    another unless the sentence says so. The rewards are unchanged.
    """
    import random

    by_label: dict[str, list[Example]] = {}
    for e in examples:
        by_label.setdefault(e.label, []).append(e)
    labels = sorted(by_label, key=LABELS.index)
    rng = random.Random(seed)
    return [rng.choice(by_label[rng.choice(labels)]) for _ in examples]
