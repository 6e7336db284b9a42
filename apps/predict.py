"""predict: the task's answer for one query, with the model's reasoning.

    python -m apps.predict --text "…" --people1 A --people2 B [--url http://HOST:PORT/v1]
    python -m apps.predict --input FILE --output FILE [--url …]

The options of one query are the task's input fields (``--text``, ``--people1``, ``--people2``
for the relation task; ``--help`` lists them). Or a whole file: CSV or JSONL in the data's
layout (the input fields, and ``label`` to score the answers). A file's rows go through the server concurrently, as
in the evaluation, with a progress bar; each answer is journalled the moment it arrives, so
an interrupted batch re-run asks only the rows still missing. A bad row gets its error in the
output and never stops the batch; the summary (printed as JSON) counts every outcome.

With ``--url`` it asks a server that is already running (``python -m flows.serve --hold``,
API key from the ``serve.api_key_env`` variable when the server needs one); without, it
starts a vLLM server on ``serve.model`` and stops it afterwards. Bad input (empty text, a
name not in the sentence, an over-long sentence, chat-template control tokens) is refused
before any model is involved.

Exit status (:mod:`people_relation.errors`): 0 done; 2 the query or file refused; 3 the model
answered without a valid label; 75 no answer from the server, or rows still unanswered: run
the same command again (finished answers are kept); 1 bad params.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from pathlib import Path
from typing import Any

import openai

from apps.endpoint import endpoint, failed
from people_relation.errors import EXIT_NO_LABEL, EXIT_OK, EXIT_TRANSIENT
from people_relation.infra.io import read_settings
from people_relation.infra.paths import resolve_arm
from people_relation.query import make_query
from people_relation.serving.batch import answer_file
from people_relation.serving.client import ask, make_client
from people_relation.task import Task


def predict(
    inputs: dict[str, str],
    params_file: str = "params.yaml",
    url: str | None = None,
    profile_name: str | None = None,
    model: str | None = None,
    run: str | None = None,
) -> dict[str, Any]:
    """The model's answer to one query (a value for each of the task's input fields): its
    inputs, label, reasoning and raw completion."""
    settings = read_settings(params_file, run)
    task = settings.task
    query = make_query(task, inputs, settings.query.max_chars)
    prof = resolve_arm(settings, profile_name).profile

    async def go(base_url: str, api_key: str | None, served: str) -> str:
        session = make_client(base_url, api_key, settings.evaluate.client())
        try:
            completion, _ = await ask(session, task, query, served, prof.serve.sampling())
        finally:
            await session.close()
        return completion

    with endpoint(settings, url, profile_name, model) as at:
        completion = asyncio.run(go(at.base_url, at.api_key, at.model))
    parsed = task.parse(completion)
    return {
        **query.inputs,
        "label": parsed.label,
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
    run: str | None = None,
) -> dict[str, Any]:
    """Answer every row of ``input_file`` into ``output_file``; returns the summary."""
    settings = read_settings(params_file, run)
    prof = resolve_arm(settings, profile_name).profile
    return answer_file(
        settings.task,
        Path(input_file),
        Path(output_file),
        settings.query.max_chars,
        lambda: endpoint(settings, url, profile_name, model),
        prof.serve.sampling(),
        settings.evaluate.client(),
    )


def task_of(argv: list[str] | None) -> Task:
    """The task of the params file the command line names (``--params-file``)."""
    first = argparse.ArgumentParser(add_help=False)
    first.add_argument("--params-file", default="params.yaml")
    first.add_argument("--run", default=None)
    known, _ = first.parse_known_args(argv)
    return read_settings(known.params_file, known.run).task


def main(argv: list[str] | None = None) -> int:
    try:
        task = task_of(argv)
    except Exception as err:
        return failed(err)
    fields = list(task.fields)
    parser = argparse.ArgumentParser(prog="python -m apps.predict", description=__doc__.split("\n")[0])
    for field in fields:
        parser.add_argument(f"--{field}", dest=f"field_{field}", help=f"input field {field!r} of task {task.name}")
    columns = ",".join(fields)
    parser.add_argument("--input", dest="input_file", help=f"a CSV or JSONL file of rows {columns}[,label]")
    parser.add_argument("--output", dest="output_file", help="where the answers go (.csv or .jsonl)")
    parser.add_argument("--url", default=None, help="a running server's base URL, e.g. http://127.0.0.1:8000/v1")
    parser.add_argument("--profile", dest="profile_name", default=None)
    parser.add_argument("--model", default=None, help="grpo, warmup or base (when starting a server)")
    parser.add_argument("--params-file", default="params.yaml")
    parser.add_argument(
        "--run", default=None, help="the run of params.yaml's runs whose task and model (default: the first)"
    )
    parser.add_argument("--json", action="store_true", help="print the whole result as JSON (one sentence)")
    args = vars(parser.parse_args(argv))
    as_json = args.pop("json")
    inputs = {f: args.pop(f"field_{f}") for f in fields}
    options = ", ".join(f"--{f}" for f in fields)
    batch = args["input_file"] is not None or args["output_file"] is not None
    single = any(v is not None for v in inputs.values())
    if batch == single or (batch and not (args["input_file"] and args["output_file"])):
        parser.error(f"give either {options}, or --input and --output")
    if not batch and any(v is None for v in inputs.values()):
        parser.error(f"one query needs {options}")
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        if batch:
            outcome = predict_file(**args)
            print(json.dumps(outcome, ensure_ascii=False, indent=2))
            return EXIT_OK if outcome["not_answered"] == 0 else EXIT_TRANSIENT  # run it again for the rest
        del args["input_file"], args["output_file"]
        result = predict(inputs, **args)  # type: ignore[arg-type]
    except openai.APIError as err:
        print(f"error: no answer from {args['url'] or 'the server'}: {err}", file=sys.stderr)
        return EXIT_TRANSIENT
    except Exception as err:
        return failed(err)
    if as_json:
        print(json.dumps(result, ensure_ascii=False, indent=2))
    else:
        print(f"label: {result['label'] or '(no valid answer)'}")
        print(f"reasoning: {result['reasoning'] if result['reasoning'] is not None else result['completion']}")
    return EXIT_OK if result["label"] else EXIT_NO_LABEL


if __name__ == "__main__":
    sys.exit(main())
