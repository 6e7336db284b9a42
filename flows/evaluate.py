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
from prefect import flow, get_run_logger

from flows.cli import run
from people_relation.infra.data import read_examples
from people_relation.infra.io import (
    claim_checkpoint_dir,
    fingerprint,
    project_path,
    read_settings,
    staged_dir,
    write_json_atomic,
)
from people_relation.infra.paths import Arm, metrics_path, resolve_arm, split_file
from people_relation.infra.tracking import mlflow_run
from people_relation.predictions import PREDICTIONS, ordered, read_records
from people_relation.settings import Evaluate
from steps.evaluate import answer, score


def test_rows(split, evaluate: Evaluate) -> list:
    rows = read_examples(split_file(split, evaluate.split))
    return rows[: evaluate.max_rows] if evaluate.max_rows is not None else rows


def latency_p50(rows: list, state: Path) -> float:
    """Median seconds per answer (requests in flight together), from the run's own records."""
    records = ordered(rows, read_records(state / PREDICTIONS)[0])
    return statistics.median(r["latency_s"] for r in records)


def tag_registered_version(arm: Arm, model: Path, result: dict) -> None:
    """The registered version of this model gets its test scores as tags (full test set only);
    the ``champion`` alias stays where validation put it at registration."""
    from people_relation.infra.registry import record_test_scores, registered_name

    logger = get_run_logger()
    registered = registered_name(arm.settings.tracking, arm.name, arm.settings.own_run)
    if arm.settings.evaluate.max_rows is not None:
        logger.info("Not tagging %s: evaluate.max_rows scores only part of the test set", registered)
        return
    keep = ("weighted_f1", "macro_f1", "accuracy", "invalid_rate")
    version = record_test_scores(registered, fingerprint(model), {k: result[k] for k in keep})
    if version is None:
        logger.warning("No registered version of %s matches %s; test scores stay in this run", registered, model)
    else:
        logger.info("Tagged %s version %s with its test scores", registered, version)


@flow(name="evaluate", log_prints=True)
def evaluate_flow(
    params_file: str = "params.yaml", run: str | None = None, profile_name: str | None = None
) -> dict[str, Any]:
    logger = get_run_logger()
    arm = resolve_arm(read_settings(params_file, run), profile_name)
    settings, name, prof = arm.settings, arm.name, arm.profile
    ev = settings.evaluate
    rows = test_rows(settings.split, ev)
    state_root = project_path(ev.state_dir) / name
    reports = project_path(ev.reports_dir) / name
    logged = {"profile": name, "models": prof.evaluate_models, "evaluate": ev, "serve": prof.serve}
    results: dict[str, Any] = {"profile": name, "split": ev.split, "rows": len(rows)}
    serve_key = prof.serve.model_dump(exclude_unset=True)  # the generation settings, as the params file says
    with mlflow_run(settings.tracking, name, "evaluate", logged):
        with staged_dir(reports) as out:
            for phase in prof.evaluate_models:
                model = arm.model(phase)
                state = state_root / phase
                key = fingerprint(model, serve_key, [(e.id, *e.key) for e in rows], settings.task.to_dict())
                claim_checkpoint_dir(state, key)
                # the log stays beside the answers, so a failed start-up can be read after the run
                answer.with_options(retries=ev.answer_retries)(
                    settings.task,
                    settings.serve,
                    prof,
                    name,
                    phase,
                    model,
                    rows,
                    prof.serve.sampling(),
                    ev.client(),
                    state,
                    state / "server.log",
                )
                results[phase] = score(settings.task, phase, rows, state, out / phase, settings.reports.chart_dpi)
                logger.info("%s: %s", phase, {k: round(v, 4) for k, v in results[phase].items()})
                mlflow.log_metrics({f"{phase}/test_{k}": v for k, v in results[phase].items()})
                mlflow.log_metric(f"{phase}/latency_p50_s", latency_p50(rows, state))
                if (state / "server.log").is_file():  # timings and a port: MLflow, not the DVC output
                    mlflow.log_artifact(str(state / "server.log"), f"evaluate/{phase}")
                if phase == "grpo" and prof.register_model and ev.split == "test":
                    tag_registered_version(arm, model, results[phase])
        metrics_file = metrics_path(ev, name)
        metrics_file.parent.mkdir(parents=True, exist_ok=True)
        write_json_atomic(metrics_file, results)
        mlflow.log_artifacts(str(reports), "evaluate")
        mlflow.log_artifact(str(metrics_file), "evaluate")
    return results


def _arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--profile", dest="profile_name", default=None, help="another profile than the run's (runs.<run>.profile)"
    )


if __name__ == "__main__":
    run(evaluate_flow, add_arguments=_arguments)
