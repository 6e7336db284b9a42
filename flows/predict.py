"""predict: the relation between two people in a sentence, with the model's reasoning.

    python -m flows.predict --text "…" --people1 A --people2 B [--url http://HOST:PORT/v1]
    python -m flows.predict --input FILE --output FILE [--url …]

One sentence, or a whole file: CSV or JSONL in the data's layout (``text,people1,people2``,
and ``label`` to score the answers). A file's rows go through the server concurrently, as
in the evaluation, with a progress bar; each answer is journalled the moment it arrives, so
an interrupted batch re-run asks only the rows still missing. A bad row gets its error in the
output and never stops the batch; the summary (printed as JSON) counts every outcome.

With ``--url`` it asks a server that is already running (``python -m flows.serve --hold``,
API key from the ``serve.api_key_env`` variable when the server needs one); without, it
starts a vLLM server on ``serve.model`` and stops it afterwards. Bad input (empty text, a
name not in the sentence, an over-long sentence, chat-template control tokens) is refused
before any model is involved.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import logging
import os
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

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
from people_relation.infra.io import read_settings
from people_relation.params import ParamsError
from people_relation.parsing import parse_completion
from people_relation.paths import train_paths
from people_relation.query import QueryError, make_query
from people_relation.serving.client import answer_each, ask, make_client
from people_relation.serving.errors import ServerError
from people_relation.serving.server import served_model
from people_relation.settings import Sampling, Settings

log = logging.getLogger("people_relation.predict")
# a request the server refused for what it holds: that row's error, the batch goes on.
# Anything else (no key, unknown model, 5xx after retries, no connection) leaves the row
# unanswered for a re-run.
ROW_REJECTIONS = (400, 413, 422)


@dataclasses.dataclass(frozen=True)
class Endpoint:
    base_url: str
    api_key: str | None
    model: str


@contextmanager
def endpoint(settings: Settings, profile_name: str | None, url: str | None, model: str | None) -> Iterator[Endpoint]:
    """The server to ask: the one at ``url``, or one started here for the ``with`` block."""
    if url:
        yield Endpoint(url, os.environ.get(settings.serve.api_key_env) or None, settings.serve.served_model_name)
        return
    name = settings.profile_name(profile_name)
    prof = settings.profile(name)
    model_dir = train_paths(settings, name).model(prof, model or settings.serve.model)
    with (
        tempfile.TemporaryDirectory() as tmp,
        served_model(settings.serve, prof, model_dir, Path(tmp) / "server.log", name) as server,
    ):
        yield Endpoint(server.base_url, server.api_key, server.model)


def predict(
    text: str,
    people1: str,
    people2: str,
    params_file: str = "params.yaml",
    url: str | None = None,
    profile_name: str | None = None,
    model: str | None = None,
) -> dict[str, Any]:
    settings = read_settings(params_file)
    query = make_query(text, people1, people2, settings.predict.max_chars)
    prof = settings.profile(settings.profile_name(profile_name))

    async def go(at: Endpoint) -> str:
        session = make_client(at.base_url, at.api_key, settings.evaluate.client())
        try:
            completion, _ = await ask(session, query, at.model, prof.serve.sampling())
        finally:
            await session.close()
        return completion

    with endpoint(settings, profile_name, url, model) as at:
        completion = asyncio.run(go(at))
    parsed = parse_completion(completion)
    return {
        "text": query.text,
        "people1": query.people1,
        "people2": query.people2,
        "label": parsed.answer if parsed.format_ok and parsed.answer_is_label else None,
        "reasoning": parsed.think,
        "format_ok": parsed.format_ok,
        "completion": completion,
    }


def predict_file(
    input_file: str,
    output_file: str,
    params_file: str = "params.yaml",
    url: str | None = None,
    profile_name: str | None = None,
    model: str | None = None,
) -> dict[str, Any]:
    """Answer every row of ``input_file`` into ``output_file``; returns the summary."""
    settings = read_settings(params_file)
    out = Path(output_file)
    file_format(out, "output")  # refused before any work
    if out.resolve() == Path(input_file).resolve():
        raise BatchError(f"{out}: the output would overwrite the input; give another --output file")
    out.parent.mkdir(parents=True, exist_ok=True)
    table, has_gold = read_table(Path(input_file))
    rows = batch_rows(table, has_gold, settings.predict.max_chars)
    journal = out.with_name(out.name + ".partial")
    done = read_answers([out, journal])
    todo = _unasked(rows, done)
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
        prof = settings.profile(settings.profile_name(profile_name))
        with endpoint(settings, profile_name, url, model) as at, journal.open("a", encoding="utf-8") as fh:
            failures = _ask_all(todo, at, settings, prof.serve.sampling(), fh, done)
    records = results(rows, done)
    write_table(out, [r for r in records if r is not None], has_gold)
    result = summary(rows, records, has_gold)
    if failures:
        result["first_failure"] = failures[0]
    if result["not_answered"] == 0:
        journal.unlink(missing_ok=True)
    return result


def _unasked(rows: list[BatchRow], done: dict[str, dict[str, Any]]) -> dict[str, BatchRow]:
    """Valid rows without an answer, one per key (a repeated row is asked once)."""
    todo: dict[str, BatchRow] = {}
    for row in rows:
        if row.query is not None and row.key not in done:
            todo.setdefault(row.key, row)
    return todo


def _ask_all(
    todo: dict[str, BatchRow],
    at: Endpoint,
    settings: Settings,
    sampling: Sampling,
    fh: Any,
    done: dict[str, dict[str, Any]],
) -> list[str]:
    """Ask every row of ``todo``, journalling each final answer to ``fh`` and into ``done``;
    returns the failures that leave rows unanswered."""
    failures: list[str] = []
    bar = tqdm(total=len(todo), desc="rows", unit="row", file=sys.stderr, disable=None)

    def keep(key: str, record: dict[str, Any]) -> None:
        fh.write(json.dumps(record, ensure_ascii=False) + "\n")
        fh.flush()
        os.fsync(fh.fileno())
        done[key] = record
        bar.update()

    def on_answer(example: Example, completion: str, latency: float) -> None:  # noqa: ARG001
        keep(example.id, answered_record(todo[example.id], completion))

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
            answer_each(
                examples, at.base_url, at.api_key, at.model, sampling, settings.evaluate.client(), on_answer, on_failure
            )
        )
    finally:
        bar.close()
    return failures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m flows.predict", description=__doc__.split("\n")[0])
    parser.add_argument("--text", help="the sentence")
    parser.add_argument("--people1")
    parser.add_argument("--people2")
    parser.add_argument("--input", dest="input_file", help="a CSV or JSONL file of rows text,people1,people2[,label]")
    parser.add_argument("--output", dest="output_file", help="where the answers go (.csv or .jsonl)")
    parser.add_argument("--url", default=None, help="a running server's base URL, e.g. http://127.0.0.1:8000/v1")
    parser.add_argument("--profile", dest="profile_name", default=None)
    parser.add_argument("--model", default=None, help="grpo, warmup or base (when starting a server)")
    parser.add_argument("--params-file", default="params.yaml")
    parser.add_argument("--json", action="store_true", help="print the whole result as JSON (one sentence)")
    args = vars(parser.parse_args(argv))
    as_json = args.pop("json")
    batch = args["input_file"] is not None or args["output_file"] is not None
    single = any(args[k] is not None for k in ("text", "people1", "people2"))
    if batch == single or (batch and not (args["input_file"] and args["output_file"])):
        parser.error("give either --text, --people1 and --people2, or --input and --output")
    if not batch and not (args["text"] is not None and args["people1"] is not None and args["people2"] is not None):
        parser.error("one sentence needs --text, --people1 and --people2")
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        if batch:
            del args["text"], args["people1"], args["people2"]
            outcome = predict_file(**args)
            print(json.dumps(outcome, ensure_ascii=False, indent=2))
            return 0 if outcome["not_answered"] == 0 else 1
        del args["input_file"], args["output_file"]
        result = predict(**args)
    except openai.APIError as err:
        print(f"error: no answer from {args['url'] or 'the server'}: {err}", file=sys.stderr)
        return 1
    except (QueryError, BatchError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except (ParamsError, ServerError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    if as_json:
        print(json.dumps(result, ensure_ascii=False, indent=2))
    else:
        print(f"label: {result['label'] or '(no valid answer)'}")
        print(f"reasoning: {result['reasoning'] if result['reasoning'] is not None else result['completion']}")
    return 0 if result["label"] else 3


if __name__ == "__main__":
    sys.exit(main())
