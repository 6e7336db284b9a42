"""Tasks of the evaluate stage: ask the served model every test row (resumably), score the answers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import get_run_logger, task

from people_relation.infra.io import write_json
from people_relation.infra.plots import confusion_heatmap
from people_relation.metrics import confusion, report_text, scores
from people_relation.predictions import PREDICTIONS, missing, ordered, read_records, rewrite_clean, scored_answer
from people_relation.serving.client import answer_rows
from people_relation.serving.server import served_model
from people_relation.settings import ClientSettings, Profile, Sampling, Serve
from people_relation.task import Task


@task(name="answer-rows", retry_delay_seconds=10)
def answer(
    task: Task,
    serve: Serve,
    prof: Profile,
    profile_name: str,
    phase: str,
    model: Path,
    rows: list,
    sampling: Sampling,
    client: ClientSettings,
    state: Path,
    log_path: Path,
) -> int:
    """Ask the rows ``state`` has no answer for; returns how many were asked.

    Retried ``evaluate.answer_retries`` times: a server that died mid-run is started again
    and only the missing rows are asked.
    """
    logger = get_run_logger()
    done, dropped = read_records(state / PREDICTIONS)
    if dropped:
        logger.warning("Dropped %d torn line(s) from %s; those rows are asked again", dropped, state / PREDICTIONS)
        rewrite_clean(state / PREDICTIONS, done.values())
    todo = missing(rows, done)
    if not todo:
        logger.info("%s: all %d rows already answered in %s", phase, len(rows), state / PREDICTIONS)
        return 0
    logger.info("%s: %d of %d rows to ask (%d already answered)", phase, len(todo), len(rows), len(rows) - len(todo))
    with served_model(serve, prof, model, log_path, profile_name) as server:
        return answer_rows(
            task,
            todo,
            server.base_url,
            server.api_key,
            server.model,
            sampling,
            client,
            state / PREDICTIONS,
            server.alive,
        )


@task(name="score")
def score(task: Task, phase: str, rows: list, state: Path, out: Path, dpi: int) -> dict[str, Any]:
    records = ordered(rows, read_records(state / PREDICTIONS)[0])
    gold = [r["label"] for r in records]
    predicted = [scored_answer(r) for r in records]
    result = scores(task.labels, gold, predicted)
    result |= {"rows": len(records), "format_ok_rate": sum(r["format_ok"] for r in records) / len(records)}
    out.mkdir(parents=True, exist_ok=True)
    # answers without their wall-clock latency: the outputs depend on the model and the rows only
    rewrite_clean(out / PREDICTIONS, [{k: v for k, v in r.items() if k != "latency_s"} for r in records])
    (out / "classification_report.txt").write_text(report_text(task.labels, gold, predicted), encoding="utf-8")
    columns, matrix = confusion(task.labels, gold, predicted)
    confusion_heatmap(
        rows=columns[:-1],
        columns=columns,
        matrix=matrix,
        title=f"{phase}: weighted F1 {result['weighted_f1'] * 100:.2f}% on {len(records)} rows",
        path=out / "confusion_matrix.png",
        dpi=dpi,
    )
    write_json(out / "metrics.json", result)
    return result
