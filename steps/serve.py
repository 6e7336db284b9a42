"""Work of the serve stage: the server held open (vLLM, started and always stopped), a few
validation rows asked of it, and serving until the user stops it."""

from __future__ import annotations

import signal
import time
from pathlib import Path
from typing import Any

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from people_relation.infra.data import read_examples
from people_relation.infra.paths import split_file
from people_relation.predictions import read_records
from people_relation.serving.client import answer_rows
from people_relation.serving.server import Server, served_model
from people_relation.settings import ClientSettings, Sampling, Split
from people_relation.task import Task

__all__ = ["served_model", "serve_until_stopped", "smoke_check"]


@task(name="smoke-check", cache_policy=NO_CACHE)  # a live server is not an input to cache on
def smoke_check(
    task: Task,
    split: Split,
    rows_asked: int,
    server: Server,
    sampling: Sampling,
    client: ClientSettings,
    out_file: Path,
) -> dict[str, Any]:
    """Ask the first ``rows_asked`` validation rows; every answer must come back and parse."""
    rows = read_examples(split_file(split, "validation"))[:rows_asked]
    answered = answer_rows(
        task, rows, server.base_url, server.api_key, server.model, sampling, client, out_file, server.alive
    )
    done = read_records(out_file)[0]
    records = [done[r.id] for r in rows if r.id in done]  # in the rows' order, not the answers' arrival
    return {
        "rows": answered,
        "format_ok_rate": sum(r["format_ok"] for r in records) / max(1, len(records)),
        "answers": [{k: r[k] for k in (*task.fields, "label", "completion", "answer")} for r in records],
    }


def _requested_stop(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def serve_until_stopped(server: Server) -> None:
    """Serve until Ctrl-C or SIGTERM (both a requested stop: the run completes), or until
    the server dies (the run fails)."""
    logger = get_run_logger()
    logger.info(
        "Serving %r at %s (API key %s). Ctrl-C stops the server.",
        server.model,
        server.base_url,
        "required" if server.api_key else "not required",
    )
    previous = signal.signal(signal.SIGTERM, _requested_stop)
    try:
        while server.alive():
            time.sleep(1)
    except KeyboardInterrupt:
        logger.info("Stopping the server")
        return
    finally:
        signal.signal(signal.SIGTERM, previous)
    raise RuntimeError(f"the vLLM server exited on its own; see {server.log_path}")
