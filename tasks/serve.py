"""Task of the serve stage: a few validation rows asked of the live server."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from people_relation.infra.data import read_examples
from people_relation.paths import split_file
from people_relation.predictions import read_records
from people_relation.serving.client import answer_rows
from people_relation.serving.server import Server
from people_relation.settings import ClientSettings, Sampling, Split


@task(name="smoke-check", cache_policy=NO_CACHE)  # a live server is not an input to cache on
def smoke_check(
    split: Split, rows_asked: int, server: Server, sampling: Sampling, client: ClientSettings, out_file: Path
) -> dict[str, Any]:
    """Ask the first ``rows_asked`` validation rows; every answer must come back and parse."""
    rows = read_examples(split_file(split, "validation"))[:rows_asked]
    answered = answer_rows(
        rows, server.base_url, server.api_key, server.model, sampling, client, out_file, server.alive
    )
    done = read_records(out_file)[0]
    records = [done[r.id] for r in rows if r.id in done]  # in the rows' order, not the answers' arrival
    return {
        "rows": answered,
        "format_ok_rate": sum(r["format_ok"] for r in records) / max(1, len(records)),
        "answers": [
            {k: r[k] for k in ("text", "people1", "people2", "label", "completion", "answer")} for r in records
        ],
    }
