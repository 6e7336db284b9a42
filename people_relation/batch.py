"""Batch predictions: a file of sentences in the data's layout in, one answer per row out.

The input is CSV (a header naming the task's input fields, optionally ``label``) or JSONL
(one object a line with those keys). Every row is checked as a single query is (empty
fields, names not in the sentence, over-long text, chat-template control tokens): a bad row
gets its error in the output and the others go on. With a ``label`` column, the answers are
scored against it.

Resuming: a row's answer is keyed by what the model sees (its input values, in order),
so a re-run over the same or an edited file asks only the rows without an answer yet,
whichever of the output file or its ``.partial`` journal holds it.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from people_relation.dataset import Example
from people_relation.errors import RefusedInput
from people_relation.metrics import scores
from people_relation.query import QueryError, make_query
from people_relation.task import Task

GOLD = "label"
FORMATS = {".csv": "csv", ".jsonl": "jsonl"}
# status of an output row: answered; invalid (the row was refused before any request);
# rejected (the server refused the request, e.g. a prompt over the model's length)
ANSWERED, INVALID, REJECTED = "answered", "invalid", "rejected"
FINAL = (ANSWERED, REJECTED)  # kept on a re-run; invalid rows are checked again
ANSWER_FIELDS: tuple[str, ...] = ("gold", "label", "format_ok", "reasoning", "completion", "status", "error")


def output_fields(task: Task) -> tuple[str, ...]:
    """The columns of an output file: the row number, the task's input fields, the answer."""
    return ("row", *task.fields, *ANSWER_FIELDS)


class BatchError(RefusedInput):
    """The input or output file as a whole cannot be used; the message says how to fix it."""


@dataclass(frozen=True)
class BatchRow:
    """One input row: its number (1 = the first data row), its inputs as given (stripped),
    the query, its gold label."""

    row: int
    inputs: dict[str, str]
    gold: str | None
    query: Example | None  # None when the row is invalid
    error: str | None

    @property
    def key(self) -> str:
        return row_key(list(self.inputs.values()))


def row_key(values: Sequence[str]) -> str:
    """What identifies an answer: the input values, in order, as the model sees them."""
    return hashlib.sha256(json.dumps(list(values), ensure_ascii=False).encode()).hexdigest()[:20]


def file_format(path: Path, role: str) -> str:
    try:
        return FORMATS[path.suffix.lower()]
    except KeyError:
        raise BatchError(
            f"{path}: the {role} must be a .csv or .jsonl file (got {path.suffix or 'no suffix'!r})"
        ) from None


def read_table(path: Path, task: Task) -> tuple[list[dict[str, Any] | str], bool]:
    """The rows of a CSV or JSONL file as dicts (a row that cannot be read is its error
    message instead), and whether the file has a ``label`` column."""
    kind = file_format(path, "input")
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise BatchError(f"{path}: cannot read the file ({err.strerror})") from None
    try:
        content = raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = raw[: err.start].count(b"\n") + 1
        raise BatchError(f"{path}: line {line}: not valid UTF-8; re-save the file as UTF-8") from None
    return _read_csv(content, path, task) if kind == "csv" else _read_jsonl(content)


def _read_csv(content: str, path: Path, task: Task) -> tuple[list[dict[str, Any] | str], bool]:
    reader = csv.reader(io.StringIO(content, newline=""))
    header = [h.strip() for h in next(reader, [])]
    missing = [c for c in task.fields if c not in header]
    if missing:
        raise BatchError(
            f"{path}: line 1: the header {','.join(header)!r} lacks {', '.join(missing)}; "
            f"expected {','.join(task.fields)} (and optionally {GOLD})"
        )
    rows: list[dict[str, Any] | str] = []
    try:
        for record in reader:
            if not any(cell.strip() for cell in record):
                continue
            if len(record) != len(header):
                rows.append(f"{len(record)} fields where the header has {len(header)}; quote fields with commas")
            else:
                rows.append(dict(zip(header, record, strict=True)))
    except csv.Error as err:
        raise BatchError(f"{path}: line {reader.line_num}: malformed CSV ({err})") from None
    return rows, GOLD in header


def _read_jsonl(content: str) -> tuple[list[dict[str, Any] | str], bool]:
    rows: list[dict[str, Any] | str] = []
    for line in content.splitlines():
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as err:
            rows.append(f"not JSON ({err.msg} at column {err.colno})")
            continue
        rows.append(value if isinstance(value, dict) else f"a JSON {type(value).__name__}, not an object")
    return rows, any(isinstance(r, dict) and GOLD in r for r in rows)


def batch_rows(task: Task, table: Iterable[dict[str, Any] | str], has_gold: bool, max_chars: int) -> list[BatchRow]:
    """Every input row checked as a query; a bad one carries its error."""
    out = []
    for number, row in enumerate(table, start=1):
        if isinstance(row, str):
            out.append(BatchRow(number, dict.fromkeys(task.fields, ""), None, None, row))
            continue
        inputs = {c: v.strip() if isinstance(v := row.get(c), str) else "" for c in task.fields}
        gold = row[GOLD].strip() if has_gold and isinstance(row.get(GOLD), str) else None
        problems = []
        query = None
        try:
            query = make_query(task, {c: row.get(c) for c in task.fields}, max_chars)
        except QueryError as err:
            problems.append(str(err))
        if has_gold and (problem := task.label_problem(gold or row.get(GOLD))):
            problems.append(problem)
        error = "; ".join(problems) or None
        out.append(BatchRow(number, inputs, gold, None if error else query, error))
    return out


def answered_record(task: Task, row: BatchRow, completion: str) -> dict[str, Any]:
    parsed = task.parse(completion)
    return _record(
        row,
        label=parsed.label,
        format_ok=parsed.format_ok,
        reasoning=parsed.think,
        completion=completion,
        status=ANSWERED,
    )


def error_record(row: BatchRow, status: str, error: str) -> dict[str, Any]:
    return _record(row, status=status, error=error)


def _record(row: BatchRow, **values: Any) -> dict[str, Any]:
    base = {"row": row.row, **row.inputs} | dict.fromkeys(ANSWER_FIELDS) | {"gold": row.gold}
    return base | values


def read_answers(task: Task, paths: Sequence[Path]) -> dict[str, dict[str, Any]]:
    """Final answers (answered or rejected rows) already in ``paths``, by row key; a torn or
    foreign line is skipped (its row is asked again)."""
    done: dict[str, dict[str, Any]] = {}
    for path in paths:
        if not path.is_file():
            continue
        try:
            table, _ = (
                read_table(path, task) if path.suffix != ".partial" else _read_jsonl(path.read_text("utf-8", "replace"))
            )
        except BatchError:
            continue
        for r in table:
            if isinstance(r, dict) and r.get("status") in FINAL and set(task.fields) <= r.keys():
                done[row_key([r[f] for f in task.fields])] = _typed(r, output_fields(task))
    return done


def _typed(record: dict[str, Any], fields: Sequence[str]) -> dict[str, Any]:
    """A record read back from CSV has strings only: empty is None, the flag a bool."""
    out = {k: (None if v == "" else v) for k, v in record.items() if k in fields}
    if isinstance(out.get("format_ok"), str):
        out["format_ok"] = out["format_ok"] == "True"
    return out


def results(rows: Sequence[BatchRow], done: dict[str, dict[str, Any]]) -> list[dict[str, Any] | None]:
    """The output record of every row in input order; None for a row not answered yet."""
    out: list[dict[str, Any] | None] = []
    for row in rows:
        if row.error:
            out.append(error_record(row, INVALID, row.error))
        elif row.key in done:
            answer = {k: done[row.key].get(k) for k in ("label", "format_ok", "reasoning", "completion", "status")}
            out.append(_record(row, **answer, error=done[row.key].get("error")))
        else:
            out.append(None)
    return out


def write_table(path: Path, records: Sequence[dict[str, Any]], with_gold: bool, task: Task) -> None:
    """``records`` as CSV or JSONL (by the suffix), written whole and then moved into place."""
    fields = [f for f in output_fields(task) if with_gold or f != "gold"]
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", encoding="utf-8", newline="") as fh:
        if file_format(path, "output") == "csv":
            writer = csv.DictWriter(fh, fieldnames=fields, extrasaction="ignore")
            writer.writeheader()
            writer.writerows({k: ("" if v is None else v) for k, v in r.items()} for r in records)
        else:
            for r in records:
                fh.write(json.dumps({k: r[k] for k in fields}, ensure_ascii=False) + "\n")
    tmp.replace(path)


def summary(
    task: Task, rows: Sequence[BatchRow], records: Sequence[dict[str, Any] | None], has_gold: bool
) -> dict[str, Any]:
    """Counts of the batch and, with gold labels, the scores of the answered rows (a
    rejected row counts as a wrong answer; rows not answered yet are not scored)."""
    final = [r for r in records if r is not None]
    out: dict[str, Any] = {
        "rows": len(rows),
        "answered": sum(r["status"] == ANSWERED for r in final),
        "with_label": sum(r["status"] == ANSWERED and r["label"] is not None for r in final),
        "format_ok": sum(bool(r["format_ok"]) for r in final if r["status"] == ANSWERED),
        "invalid_rows": sum(r["status"] == INVALID for r in final),
        "rejected": sum(r["status"] == REJECTED for r in final),
        "not_answered": sum(r is None for r in records),
    }
    if has_gold:
        scored = [r for r in final if r["status"] in FINAL]
        out["scored_rows"] = len(scored)
        if scored:
            out |= scores(task.labels, [r["gold"] for r in scored], [r["label"] for r in scored])
    return out
