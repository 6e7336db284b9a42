"""Prediction records: one JSON line per test row, written as each answer arrives.

A record carries everything needed to score and to audit a row (the input, the gold label,
the raw completion, its parsed reasoning and answer, whether the format held, and the
latency). Records are appended one line at a time; a run that was killed can leave a torn
last line, which :func:`read_records` drops so that row is simply asked again.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from people_relation.dataset import Example
from people_relation.task import Task

# what every record holds, besides the row's input fields (after ``id``)
FIELDS: tuple[str, ...] = (
    "id",
    "label",
    "completion",
    "think",
    "answer",
    "format_ok",
    "valid",
    "latency_s",
)


PREDICTIONS = "predictions.jsonl"  # the answers of one model, in its evaluation folder


def record(task: Task, example: Example, completion: str, latency_s: float) -> dict[str, Any]:
    """The prediction record of ``example`` answered by ``completion``."""
    parsed = task.parse(completion)
    return {
        "id": example.id,
        **example.inputs,
        "label": example.label,
        "completion": completion,
        "think": parsed.think,
        "answer": parsed.answer,
        "format_ok": parsed.format_ok,
        # What is scored: the format held and the answer is one of the labels.
        "valid": parsed.label is not None,
        "latency_s": round(latency_s, 4),
    }


def read_records(path: Path) -> tuple[dict[str, dict[str, Any]], int]:
    """Records already written to ``path`` by id, and how many unreadable lines were dropped.

    Only a torn line (a write cut short by a crash) is expected; it is dropped, not fatal.
    """
    done: dict[str, dict[str, Any]] = {}
    dropped = 0
    if not path.is_file():
        return done, dropped
    with path.open(encoding="utf-8", errors="replace") as fh:
        for line in fh:
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                dropped += 1
                continue
            if isinstance(row, dict) and set(FIELDS) <= row.keys():
                done[row["id"]] = row
            else:
                dropped += 1
    return done, dropped


def rewrite_clean(path: Path, records: Iterable[dict[str, Any]]) -> None:
    """Rewrite ``path`` with exactly ``records`` (drops torn lines before appending again)."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    with tmp.open("w", encoding="utf-8") as fh:
        for row in records:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
    tmp.replace(path)


def scored_answer(row: dict[str, Any]) -> str | None:
    """The label a stored record answers (see ``ParsedCompletion.label``): its answer when
    valid, else None (a wrong prediction)."""
    return row["answer"] if row.get("valid") else None


def missing(examples: Sequence[Example], done: dict[str, dict[str, Any]]) -> list[Example]:
    """The examples not yet answered, in their original order."""
    return [e for e in examples if e.id not in done]


def ordered(examples: Sequence[Example], done: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """The records of ``examples`` in the examples' order; every example must be answered."""
    absent = [e.id for e in examples if e.id not in done]
    if absent:
        raise ValueError(f"{len(absent)} rows have no prediction yet, e.g. {absent[:3]}")
    return [done[e.id] for e in examples]
