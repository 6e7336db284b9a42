"""Ask the served model about many rows at once, saving each answer as it arrives.

Requests go to vLLM's OpenAI-compatible chat endpoint with the task's prompt: the
system and user messages plus the assistant prefill, continued (not closed) by the
server's chat template, greedy. At most ``concurrency`` requests are in flight; the
``openai`` client retries connection errors, timeouts and 5xx answers with exponential
backoff. Every answer is appended to the predictions file (and flushed to disk) the
moment it arrives, so a run stopped at any point keeps every finished row.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import openai

from people_relation.dataset import Example
from people_relation.errors import EvaluationInterrupted
from people_relation.predictions import record
from people_relation.settings import ClientSettings, Sampling
from people_relation.task import Task

log = logging.getLogger(__name__)


__all__ = [
    "ClientSettings",
    "Endpoint",
    "EvaluationInterrupted",
    "Sampling",
    "answer_each",
    "answer_rows",
    "ask",
    "make_client",
    "request_body",
]


@dataclass(frozen=True)
class Endpoint:
    """A served model to ask: the API's base URL, its key (None: none needed), the model name."""

    base_url: str
    api_key: str | None
    model: str


def request_body(task: Task, example: Example, model: str, sampling: Sampling) -> dict[str, Any]:
    """The chat-completions request for one row (also what ``predict`` sends)."""
    return {
        "model": model,
        "messages": task.build_messages(example.inputs),
        "max_tokens": sampling.max_tokens,
        "temperature": sampling.temperature,
        "seed": sampling.seed,
        # continue the prefilled assistant turn instead of opening a new one
        "extra_body": {
            "add_generation_prompt": False,
            "continue_final_message": True,
            "skip_special_tokens": True,
        },
    }


def make_client(base_url: str, api_key: str | None, settings: ClientSettings) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(
        base_url=base_url,
        api_key=api_key or "not-needed",
        timeout=settings.timeout_s,
        max_retries=settings.max_retries,
    )


async def ask(
    client: openai.AsyncOpenAI, task: Task, example: Example, model: str, sampling: Sampling
) -> tuple[str, float]:
    start = time.monotonic()
    response = await client.chat.completions.create(**request_body(task, example, model, sampling))
    return response.choices[0].message.content or "", time.monotonic() - start


async def answer_each(
    task: Task,
    examples: Sequence[Example],
    base_url: str,
    api_key: str | None,
    model: str,
    sampling: Sampling,
    settings: ClientSettings,
    on_answer: Callable[[Example, str, float], None],
    on_failure: Callable[[Example, openai.APIError], None],
    server_alive: Callable[[], bool] = lambda: True,
) -> None:
    """Ask about every example, at most ``settings.concurrency`` at a time, calling
    ``on_answer(example, completion, latency)`` as each answer arrives and
    ``on_failure(example, error)`` for a request that failed after the client's retries.
    Once a request has failed and the server is gone, the rows still waiting are not sent."""
    client = make_client(base_url, api_key, settings)
    gate = asyncio.Semaphore(settings.concurrency)
    failed = False

    async def one(example: Example) -> None:
        nonlocal failed
        async with gate:
            if failed and not server_alive():
                return  # the server is gone: do not send more requests to it
            try:
                completion, latency = await ask(client, task, example, model, sampling)
            except (openai.APIConnectionError, openai.APITimeoutError, openai.APIStatusError) as err:
                failed = True
                on_failure(example, err)
                return
        on_answer(example, completion, latency)

    try:
        await asyncio.gather(*(one(e) for e in examples))
    finally:
        await client.close()


async def _answer_all(
    task: Task,
    examples: Sequence[Example],
    base_url: str,
    api_key: str | None,
    model: str,
    sampling: Sampling,
    settings: ClientSettings,
    out: Path,
    server_alive: Callable[[], bool],
) -> tuple[int, list[str]]:
    failures: list[str] = []
    done = 0
    start = time.monotonic()
    with out.open("a", encoding="utf-8") as fh:

        def save(example: Example, completion: str, latency: float) -> None:
            nonlocal done
            fh.write(json.dumps(record(task, example, completion, latency), ensure_ascii=False) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
            done += 1
            if done % settings.progress_every == 0 or done == len(examples):
                rate = done / max(time.monotonic() - start, 1e-9)
                log.info("answered %d/%d rows (%.1f rows/s)", done, len(examples), rate)

        def fail(example: Example, err: openai.APIError) -> None:
            failures.append(f"{example.id}: {type(err).__name__}: {err}")

        await answer_each(task, examples, base_url, api_key, model, sampling, settings, save, fail, server_alive)
    return done, failures


def answer_rows(
    task: Task,
    examples: Sequence[Example],
    base_url: str,
    api_key: str | None,
    model: str,
    sampling: Sampling,
    settings: ClientSettings,
    out: Path,
    server_alive: Callable[[], bool] = lambda: True,
) -> int:
    """Ask about every row in ``examples``, appending each record to ``out``; returns how many.

    Raises :class:`EvaluationInterrupted` when some rows failed after all retries; the rows
    that were answered stay in ``out``.
    """
    if not examples:
        return 0
    done, failures = asyncio.run(
        _answer_all(task, examples, base_url, api_key, model, sampling, settings, out, server_alive)
    )
    if failures:
        raise EvaluationInterrupted(
            f"{len(examples) - done} of {len(examples)} rows got no answer from {base_url} "
            f"(server {'running' if server_alive() else 'not running'}); the {done} answered rows are "
            f"saved in {out} and a re-run asks only the missing ones. First failure: {failures[0]}"
        )
    return done
