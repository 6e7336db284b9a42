"""baseline: the classical baseline measured on the same split.

Char n-gram TF-IDF + linear SVM (names masked), fitted on the train split and scored on
the validation and test splits. Outputs: ``reports/baseline/metrics.json`` and the test
answers, ``reports/baseline/test_predictions.jsonl`` (for the error analysis).
"""

from __future__ import annotations

import mlflow
from prefect import flow, get_run_logger, task

from flows.cli import run
from people_relation.baseline import fit_predict
from people_relation.infra.data import read_examples
from people_relation.infra.io import project_path, read_project_params, staged_dir, write_json, write_jsonl
from people_relation.infra.tracking import mlflow_run
from people_relation.metrics import report_text, scores
from people_relation.params import get, get_float, get_int, get_str

METRICS_FILE = "metrics.json"


@task(name="fit-baseline")
def fit_and_score(params: dict) -> tuple[dict, str, list[dict]]:
    split = project_path(get_str(params, "split.out_dir"))
    train, validation, test = (read_examples(split / f"{n}.jsonl") for n in ("train", "validation", "test"))
    b = get(params, "baseline")
    val_pred, test_pred = fit_predict(
        train,
        [validation, test],
        ngram_min=get_int(b, "ngram_min"),
        ngram_max=get_int(b, "ngram_max"),
        c=get_float(b, "C"),
        mask_names=bool(get(b, "mask_names")),
        seed=get_int(params, "split.seed"),
    )
    metrics = {
        "method": "char n-gram TF-IDF + linear SVM",
        "validation": scores([e.label for e in validation], val_pred),
        "test": scores([e.label for e in test], test_pred),
    }
    predictions = [{"id": e.id, "label": e.label, "predicted": p} for e, p in zip(test, test_pred, strict=True)]
    return metrics, report_text([e.label for e in test], test_pred), predictions


@flow(name="baseline", log_prints=True)
def baseline_flow(params_file: str = "params.yaml") -> dict:
    params = read_project_params(params_file)
    reports = project_path(get_str(params, "baseline.reports_dir"))
    with mlflow_run(params, "baseline", {"baseline": get(params, "baseline")}):
        metrics, report, predictions = fit_and_score(params)
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
