"""baseline: two baselines measured on the same split.

* Char n-gram TF-IDF + linear SVM (names masked), fitted on the train split: what the
  labels alone teach a classical model. ``reports/baseline/metrics.json``, and its answers
  in ``validation_predictions.jsonl`` and ``test_predictions.jsonl``.
* The keyword rules (``people_relation/keywords.py``), no training: the prior knowledge
  the ``cpu-prior`` profile starts from. ``keyword_metrics.json`` and
  ``keyword_predictions.jsonl`` (each answer with the word that decided it).

Both are scored on the validation and test splits; the report adds their intervals.
"""

from __future__ import annotations

import mlflow
from prefect import flow, get_run_logger

from flows.cli import run
from people_relation.infra.io import project_path, read_settings, staged_dir, write_json, write_jsonl
from people_relation.infra.tracking import mlflow_run
from steps.baseline import fit_and_score, keyword_rules

METRICS_FILE = "metrics.json"
KEYWORD_METRICS_FILE = "keyword_metrics.json"
KEYWORD_PREDICTIONS_FILE = "keyword_predictions.jsonl"


@flow(name="baseline", log_prints=True)
def baseline_flow(params_file: str = "params.yaml") -> dict:
    settings = read_settings(params_file)
    reports = project_path(settings.baseline.reports_dir)
    with mlflow_run(settings.tracking, settings.train.profile, "baseline", {"baseline": settings.baseline}):
        metrics, report, predictions = fit_and_score(settings.split, settings.baseline)
        keywords, keyword_answers = keyword_rules(settings.split)
        with staged_dir(reports) as out:
            write_json(out / METRICS_FILE, metrics)
            for split in ("validation", "test"):
                write_jsonl(out / f"{split}_predictions.jsonl", predictions[split])
            (out / "classification_report.txt").write_text(report, encoding="utf-8")
            write_json(out / KEYWORD_METRICS_FILE, keywords)
            write_jsonl(out / KEYWORD_PREDICTIONS_FILE, [r for s in ("validation", "test") for r in keyword_answers[s]])
        for split in ("validation", "test"):
            mlflow.log_metrics({f"{split}_{k}": v for k, v in metrics[split].items()})
            mlflow.log_metrics({f"keywords/{split}_{k}": v for k, v in keywords[split].items()})
        mlflow.log_artifacts(str(reports), "baseline")
    log = get_run_logger()
    for result in (metrics, keywords):
        log.info(
            "%s weighted F1: validation %.4f, test %.4f",
            result["method"],
            result["validation"]["weighted_f1"],
            result["test"]["weighted_f1"],
        )
    return {"tfidf": metrics, "keywords": keywords}


if __name__ == "__main__":
    run(baseline_flow)
