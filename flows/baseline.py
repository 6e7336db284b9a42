"""baseline: two baselines measured on the same split.

* Char n-gram TF-IDF + linear SVM (names masked), fitted on the train split: what the
  labels alone teach a classical model. ``reports/baseline/metrics.json``, and its answers
  in ``validation_predictions.jsonl`` and ``test_predictions.jsonl``.
* The task's rule-based prior (the relation task's keyword rules, ``people_relation/keywords.py``),
  no training: the prior knowledge the ``cpu-prior`` profile starts from. ``prior_metrics.json``
  and ``prior_predictions.jsonl`` (each answer with the word that decided it); a task without
  a prior gets ``{"method": null}`` and no answers.

Both are scored on the validation and test splits; the report adds their intervals.
"""

from __future__ import annotations

import mlflow
from prefect import flow, get_run_logger

from flows.cli import run
from people_relation.infra.io import project_path, read_settings, staged_dir, write_json, write_jsonl
from people_relation.infra.tracking import mlflow_run
from steps.baseline import fit_and_score, prior_rules

METRICS_FILE = "metrics.json"
PRIOR_METRICS_FILE = "prior_metrics.json"
PRIOR_PREDICTIONS_FILE = "prior_predictions.jsonl"


@flow(name="baseline", log_prints=True)
def baseline_flow(params_file: str = "params.yaml", run: str | None = None) -> dict:
    settings = read_settings(params_file, run)
    reports = project_path(settings.baseline.reports_dir)
    with mlflow_run(settings.tracking, settings.train.profile, "baseline", {"baseline": settings.baseline}):
        metrics, report, predictions = fit_and_score(settings.task, settings.split, settings.baseline)
        prior, prior_answers = prior_rules(settings.task, settings.split)
        with staged_dir(reports) as out:
            write_json(out / METRICS_FILE, metrics)
            for split in ("validation", "test"):
                write_jsonl(out / f"{split}_predictions.jsonl", predictions[split])
            (out / "classification_report.txt").write_text(report, encoding="utf-8")
            write_json(out / PRIOR_METRICS_FILE, prior)
            write_jsonl(out / PRIOR_PREDICTIONS_FILE, [r for s in ("validation", "test") for r in prior_answers[s]])
        for split in ("validation", "test"):
            mlflow.log_metrics({f"{split}_{k}": v for k, v in metrics[split].items()})
            if prior["method"]:
                mlflow.log_metrics({f"prior/{split}_{k}": v for k, v in prior[split].items()})
        mlflow.log_artifacts(str(reports), "baseline")
    log = get_run_logger()
    for result in (metrics, prior) if prior["method"] else (metrics,):
        log.info(
            "%s weighted F1: validation %.4f, test %.4f",
            result["method"],
            result["validation"]["weighted_f1"],
            result["test"]["weighted_f1"],
        )
    return {"tfidf": metrics, "prior": prior}


if __name__ == "__main__":
    run(baseline_flow)
