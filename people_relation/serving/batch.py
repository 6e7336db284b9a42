"""A file of rows answered by the served model, each answer journalled the moment it arrives.

``answer_file`` reads the rows (CSV or JSONL in the data's layout), checks each one, reuses
every answer the output or its journal (``OUTPUT.partial``) already holds, asks only the
rows still missing, concurrently and with a progress bar, and writes the output and the
summary. A bad row gets its error and never stops the batch; a row the server refuses for
what it holds gets that refusal; a run stopped at any point (Ctrl-C, a crash, a server that
went away) loses no finished answer, and the same command run again asks only what is left.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import os
import sys
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, TextIO

import openai
from tqdm import tqdm

from people_relation.batch import (
    REJECTED,
    BatchError,
    BatchRow,
    answered_record,
    batch_rows,
    error_record,
    file_format,
    read_answers,
    read_table,
    results,
    summary,
    write_table,
)
from people_relation.dataset import Example
from people_relation.serving.client import Endpoint, answer_each
from people_relation.settings import ClientSettings, Sampling
from people_relation.task import Task

log = logging.getLogger("people_relation.predict")
# a request the server refused for what it holds: that row's error, the batch goes on.
# Anything else (no key, unknown model, 5xx after retries, no connection) leaves the row
# unanswered for a re-run.
ROW_REJECTIONS = (400, 413, 422)


def answer_file(
    task: Task,
    input_file: Path,
    output_file: Path,
    max_chars: int,
    connect: Callable[[], AbstractContextManager[Endpoint]],
    sampling: Sampling,
    client: ClientSettings,
) -> dict[str, Any]:
    """Answer every row of ``input_file`` into ``output_file``; returns the summary.

    ``connect()`` gives the server to ask for the duration of a ``with`` block; it is called
    only when some row still needs an answer, so a finished batch starts no server."""
    file_format(output_file, "output")  # refused before any work
    if output_file.resolve() == input_file.resolve():
        raise BatchError(f"{output_file}: the output would overwrite the input; give another --output file")
    output_file.parent.mkdir(parents=True, exist_ok=True)
    table, has_gold = read_table(input_file, task)
    rows = batch_rows(task, table, has_gold, max_chars)
    journal = output_file.with_name(output_file.name + ".partial")
    done = read_answers(task, [output_file, journal])
    todo = unasked(rows, done)
    log.info(
        "%d rows in %s: %d invalid, %d answered before, %d to ask",
        len(rows),
        input_file,
        sum(r.error is not None for r in rows),
        sum(r.key in done for r in rows if r.error is None),
        len(todo),
    )
    failures: list[str] = []
    if todo:
        with connect() as at, journal.open("a", encoding="utf-8") as fh:
            failures = ask_all(task, todo, at, sampling, client, fh, done)
    records = results(rows, done)
    write_table(output_file, [r for r in records if r is not None], has_gold, task)
    result = summary(task, rows, records, has_gold)
    if failures:
        result["first_failure"] = failures[0]
    if result["not_answered"] == 0:
        journal.unlink(missing_ok=True)
    return result


def unasked(rows: list[BatchRow], done: dict[str, dict[str, Any]]) -> dict[str, BatchRow]:
    """Valid rows without an answer, one per key (a repeated row is asked once)."""
    todo: dict[str, BatchRow] = {}
    for row in rows:
        if row.query is not None and row.key not in done:
            todo.setdefault(row.key, row)
    return todo


def ask_all(
    task: Task,
    todo: dict[str, BatchRow],
    at: Endpoint,
    sampling: Sampling,
    client: ClientSettings,
    fh: TextIO,
    done: dict[str, dict[str, Any]],
) -> list[str]:
    """Ask every row of ``todo``, journalling each final answer to ``fh`` (flushed and synced)
    and into ``done``; returns the failures that leave rows unanswered."""
    failures: list[str] = []
    bar = tqdm(total=len(todo), desc="rows", unit="row", file=sys.stderr, disable=None)

    def keep(key: str, record: dict[str, Any]) -> None:
        fh.write(json.dumps(record, ensure_ascii=False) + "\n")
        fh.flush()
        os.fsync(fh.fileno())
        done[key] = record
        bar.update()

    def on_answer(example: Example, completion: str, latency: float) -> None:  # noqa: ARG001
        keep(example.id, answered_record(task, todo[example.id], completion))

    def on_failure(example: Example, err: openai.APIError) -> None:
        status = getattr(err, "status_code", None)
        if status in ROW_REJECTIONS:
            keep(example.id, error_record(todo[example.id], REJECTED, f"the server refused the row ({status}): {err}"))
        else:
            failures.append(f"row {todo[example.id].row}: {type(err).__name__}: {err}")
            bar.update()

    examples = [dataclasses.replace(row.query, id=key) for key, row in todo.items() if row.query is not None]
    try:
        asyncio.run(
            answer_each(task, examples, at.base_url, at.api_key, at.model, sampling, client, on_answer, on_failure)
        )
    finally:
        bar.close()
    return failures
