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

from flows.serve import client_settings, sampling
from people_relation.dataset import Example
from people_relation.infra.io import read_project_params
from people_relation.params import ParamsError, get_int, get_str
from people_relation.parsing import parse_completion
from people_relation.query import QueryError, make_query
from people_relation.recipe import default_profile, profile
from people_relation.serving.client import ask, make_client
from people_relation.serving.server import ServerError, served_model


def _ask(base_url: str, api_key: str | None, model: str, query: Example, params: dict, name: str) -> str:
    async def go() -> str:
        client = make_client(base_url, api_key, client_settings(params))
        try:
            completion, _ = await ask(client, query, model, sampling(profile(params, name)))
        finally:
            await client.close()
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
    params = read_project_params(params_file)
    query = make_query(text, people1, people2, get_int(params, "predict.max_chars"))
    name = profile_name or default_profile(params)
    api_key = os.environ.get(get_str(params, "serve.api_key_env")) or None
    if url:
        completion = _ask(url, api_key, get_str(params, "serve.served_model_name"), query, params, name)
    else:
        stage = model or get_str(params, "serve.model")
        with (
            tempfile.TemporaryDirectory() as tmp,
            served_model(params, name, stage, Path(tmp) / "server.log") as server,
        ):
            completion = _ask(server.base_url, server.api_key, server.model, query, params, name)
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
