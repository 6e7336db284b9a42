"""evaluate: score each model of the profile on the test split, served by vLLM.

For every model in the profile's ``evaluate_models`` (CPU: the warm-up and the GRPO model;
GPU: the base model and the GRPO model), start vLLM's server on it, ask every test row
with the published prompt (greedy), and score the answers with scikit-learn.

Answers are appended to ``evaluate.state_dir/<profile>/<model>/predictions.jsonl`` as they
arrive. That file is keyed by the model's files and the generation settings: a run that
stopped halfway (server killed, Ctrl-C) resumes and asks only the missing rows, and a
re-run with the same model re-scores without asking again.

Outputs: ``reports/evaluate/<profile>/<model>/`` (predictions.jsonl, metrics.json,
classification_report.txt, confusion_matrix.png) and ``reports/metrics/<profile>.json``;
latencies and server logs go to MLflow.
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path
from typing import Any

import mlflow
from prefect import flow, get_run_logger, task

from flows.cli import run
from flows.serve import client_settings, sampling
from people_relation.infra.data import read_examples
from people_relation.infra.io import (
    fingerprint,
    project_path,
    read_project_params,
    staged_dir,
    write_json,
    write_json_atomic,
)
from people_relation.infra.plots import confusion_heatmap
from people_relation.infra.tracking import mlflow_run
from people_relation.metrics import confusion, report_text, scores
from people_relation.params import get, get_int, get_str
from people_relation.paths import metrics_path, model_dir
from people_relation.predictions import PREDICTIONS, missing, ordered, read_records, rewrite_clean, scored_answer
from people_relation.recipe import default_profile, profile
from people_relation.serving.client import answer_rows
from people_relation.serving.server import served_model
from people_relation.training.grpo import claim_checkpoint_dir


def test_rows(params: dict[str, Any]) -> list:
    split = get_str(params, "evaluate.split", ("test", "validation"))
    rows = read_examples(project_path(get_str(params, "split.out_dir")) / f"{split}.jsonl")
    limit = get(params, "evaluate").get("max_rows")
    return rows[: int(limit)] if limit is not None else rows


@task(name="answer-rows", retry_delay_seconds=10)
def answer(params: dict[str, Any], name: str, stage: str, rows: list, state: Path, log_path: Path) -> int:
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
        logger.info("%s: all %d rows already answered in %s", stage, len(rows), state / PREDICTIONS)
        return 0
    logger.info("%s: %d of %d rows to ask (%d already answered)", stage, len(todo), len(rows), len(rows) - len(todo))
    prof = profile(params, name)
    with served_model(params, name, stage, log_path) as server:
        return answer_rows(
            todo,
            server.base_url,
            server.api_key,
            server.model,
            sampling(prof),
            client_settings(params),
            state / PREDICTIONS,
            server.alive,
        )


@task(name="score")
def score(stage: str, rows: list, state: Path, out: Path, dpi: int) -> dict[str, Any]:
    records = ordered(rows, read_records(state / PREDICTIONS)[0])
    gold = [r["label"] for r in records]
    predicted = [scored_answer(r) for r in records]
    result = scores(gold, predicted)
    result |= {"rows": len(records), "format_ok_rate": sum(r["format_ok"] for r in records) / len(records)}
    out.mkdir(parents=True, exist_ok=True)
    # answers without their wall-clock latency: the outputs depend on the model and the rows only
    rewrite_clean(out / PREDICTIONS, [{k: v for k, v in r.items() if k != "latency_s"} for r in records])
    (out / "classification_report.txt").write_text(report_text(gold, predicted), encoding="utf-8")
    columns, matrix = confusion(gold, predicted)
    confusion_heatmap(
        rows=columns[:-1],
        columns=columns,
        matrix=matrix,
        title=f"{stage}: weighted F1 {result['weighted_f1'] * 100:.2f}% on {len(records)} rows",
        path=out / "confusion_matrix.png",
        dpi=dpi,
    )
    write_json(out / "metrics.json", result)
    return result


def latency_p50(rows: list, state: Path) -> float:
    """Median seconds per answer (requests in flight together), from the run's own records."""
    records = ordered(rows, read_records(state / PREDICTIONS)[0])
    return statistics.median(r["latency_s"] for r in records)


def tag_registered_version(params: dict[str, Any], name: str, model: Path, result: dict, rows: list) -> None:
    """The registered version of this model gets its test scores (full test set only) and,
    when it is the best so far, the ``champion`` alias."""
    from people_relation.infra.registry import record_test_scores, registered_name

    logger = get_run_logger()
    registered = registered_name(params, name)
    if get(params, "evaluate").get("max_rows") is not None:
        logger.info("Not tagging %s: evaluate.max_rows scores only part of the test set", registered)
        return
    keep = ("weighted_f1", "macro_f1", "accuracy", "invalid_rate")
    version = record_test_scores(registered, fingerprint(model), {k: result[k] for k in keep})
    if version is None:
        logger.warning("No registered version of %s matches %s; test scores stay in this run", registered, model)
    else:
        logger.info("Tagged %s version %s with its test scores", registered, version)


@flow(name="evaluate", log_prints=True)
def evaluate_flow(params_file: str = "params.yaml", profile_name: str | None = None) -> dict[str, Any]:
    logger = get_run_logger()
    params = read_project_params(params_file)
    name = profile_name or default_profile(params)
    prof = profile(params, name)
    stages = list(get(prof, "evaluate_models"))
    rows = test_rows(params)
    dpi = get_int(params, "reports.chart_dpi")
    state_root = project_path(get_str(params, "evaluate.state_dir")) / name
    reports = project_path(get_str(params, "evaluate.reports_dir")) / name
    logged = {"profile": name, "models": stages, "evaluate": get(params, "evaluate"), "serve": get(prof, "serve")}
    results: dict[str, Any] = {"profile": name, "split": get_str(params, "evaluate.split"), "rows": len(rows)}
    with mlflow_run(params, "evaluate", logged):
        with staged_dir(reports) as out:
            for stage in stages:
                model = model_dir(params, name, stage)
                state = state_root / stage
                key = fingerprint(model, get(prof, "serve"), [(e.id, e.text, e.people1, e.people2) for e in rows])
                claim_checkpoint_dir(state, key)
                # the log stays beside the answers, so a failed start-up can be read after the run
                answer.with_options(retries=get_int(params, "evaluate.answer_retries"))(
                    params, name, stage, rows, state, state / "server.log"
                )
                results[stage] = score(stage, rows, state, out / stage, dpi)
                logger.info("%s: %s", stage, {k: round(v, 4) for k, v in results[stage].items()})
                mlflow.log_metrics({f"{stage}/test_{k}": v for k, v in results[stage].items()})
                mlflow.log_metric(f"{stage}/latency_p50_s", latency_p50(rows, state))
                if (state / "server.log").is_file():  # timings and a port: MLflow, not the DVC output
                    mlflow.log_artifact(str(state / "server.log"), f"evaluate/{stage}")
                if stage == "grpo" and get(profile(params, name), "register_model") and results["split"] == "test":
                    tag_registered_version(params, name, model, results[stage], rows)
        metrics_file = metrics_path(params, name)
        metrics_file.parent.mkdir(parents=True, exist_ok=True)
        write_json_atomic(metrics_file, results)
        mlflow.log_artifacts(str(reports), "evaluate")
        mlflow.log_artifact(str(metrics_file), "evaluate")
    return results


def _arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--profile", dest="profile_name", default=None, help="override train.profile")


if __name__ == "__main__":
    run(evaluate_flow, add_arguments=_arguments)
