"""predict: the relation between two people in a sentence, with the model's reasoning.

    python -m flows.predict --text "…" --people1 A --people2 B [--url http://HOST:PORT/v1]

With ``--url`` it asks a server that is already running (``python -m flows.serve --hold``,
API key from the ``serve.api_key_env`` variable when the server needs one); without, it
starts a vLLM server on ``serve.model`` for the question and stops it afterwards. Bad
input (empty text, a name not in the sentence, an over-long sentence) is refused before
any model is involved.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import openai

from people_relation.dataset import Example
from people_relation.infra.io import read_settings
from people_relation.params import ParamsError
from people_relation.parsing import parse_completion
from people_relation.paths import train_paths
from people_relation.query import QueryError, make_query
from people_relation.serving.client import ask, make_client
from people_relation.serving.errors import ServerError
from people_relation.serving.server import served_model
from people_relation.settings import ClientSettings, Sampling


def _ask(
    base_url: str, api_key: str | None, model: str, query: Example, sampling: Sampling, client: ClientSettings
) -> str:
    async def go() -> str:
        session = make_client(base_url, api_key, client)
        try:
            completion, _ = await ask(session, query, model, sampling)
        finally:
            await session.close()
        return completion

    return asyncio.run(go())


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
    name = settings.profile_name(profile_name)
    prof = settings.profile(name)
    sampling, client = prof.serve.sampling(), settings.evaluate.client()
    api_key = os.environ.get(settings.serve.api_key_env) or None
    if url:
        completion = _ask(url, api_key, settings.serve.served_model_name, query, sampling, client)
    else:
        model_dir = train_paths(settings, name).model(prof, model or settings.serve.model)
        with (
            tempfile.TemporaryDirectory() as tmp,
            served_model(settings.serve, prof, model_dir, Path(tmp) / "server.log", name) as server,
        ):
            completion = _ask(server.base_url, server.api_key, server.model, query, sampling, client)
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m flows.predict", description=__doc__.split("\n")[0])
    parser.add_argument("--text", required=True, help="the sentence")
    parser.add_argument("--people1", required=True)
    parser.add_argument("--people2", required=True)
    parser.add_argument("--url", default=None, help="a running server's base URL, e.g. http://127.0.0.1:8000/v1")
    parser.add_argument("--profile", dest="profile_name", default=None)
    parser.add_argument("--model", default=None, help="grpo, warmup or base (when starting a server)")
    parser.add_argument("--params-file", default="params.yaml")
    parser.add_argument("--json", action="store_true", help="print the whole result as JSON")
    args = vars(parser.parse_args(argv))
    as_json = args.pop("json")
    try:
        result = predict(**args)
    except openai.APIError as err:
        print(f"error: no answer from {args['url'] or 'the server'}: {err}", file=sys.stderr)
        return 1
    except (QueryError, ParamsError, ServerError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2 if isinstance(err, QueryError) else 1
    if as_json:
        print(json.dumps(result, ensure_ascii=False, indent=2))
    else:
        print(f"label: {result['label'] or '(no valid answer)'}")
        print(f"reasoning: {result['reasoning'] if result['reasoning'] is not None else result['completion']}")
    return 0 if result["label"] else 3


if __name__ == "__main__":
    sys.exit(main())
