"""baseline: the classical baseline measured on the same split.

Char n-gram TF-IDF + linear SVM (names masked), fitted on the train split and scored on
the validation and test splits. Outputs: ``reports/baseline/metrics.json`` and the test
answers, ``reports/baseline/test_predictions.jsonl`` (for the error analysis).
"""

from __future__ import annotations

import mlflow
from prefect import flow, get_run_logger

from flows.cli import run
from people_relation.infra.io import project_path, read_settings, staged_dir, write_json, write_jsonl
from people_relation.infra.tracking import mlflow_run
from tasks.baseline import fit_and_score

METRICS_FILE = "metrics.json"


@flow(name="baseline", log_prints=True)
def baseline_flow(params_file: str = "params.yaml") -> dict:
    settings = read_settings(params_file)
    reports = project_path(settings.baseline.reports_dir)
    with mlflow_run(settings.tracking, settings.train.profile, "baseline", {"baseline": settings.baseline}):
        metrics, report, predictions = fit_and_score(settings.split, settings.baseline)
        with staged_dir(reports) as out:
            write_json(out / METRICS_FILE, metrics)
            write_jsonl(out / "test_predictions.jsonl", predictions)
            (out / "classification_report.txt").write_text(report, encoding="utf-8")
        for split in ("validation", "test"):
            mlflow.log_metrics({f"{split}_{k}": v for k, v in metrics[split].items()})
        mlflow.log_artifacts(str(reports), "baseline")
    get_run_logger().info(
        "Baseline weighted F1: validation %.4f, test %.4f",
        metrics["validation"]["weighted_f1"],
        metrics["test"]["weighted_f1"],
    )
    return metrics


if __name__ == "__main__":
    run(baseline_flow)
