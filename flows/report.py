"""report: the F1 comparison of this run against the classical baseline and the published results.

Reads ``reports/metrics.json`` (this run's models on the test split) and the baseline's
metrics; writes ``reports/comparison/`` (comparison.md, comparison.csv, comparison.png)
and logs the table and chart to MLflow.
"""

from __future__ import annotations

import csv
import json
from dataclasses import asdict

import mlflow
from prefect import flow, get_run_logger

from flows.cli import run
from people_relation.comparison import comparison_rows, markdown_table
from people_relation.params import ParamsError, get_int, get_str
from people_relation.recipe import profile
from tasks.io import project_path, read_project_params, staged_dir
from tasks.plots import comparison_bars
from tasks.tracking import mlflow_run, parent_run_id

SUMMARY_METRICS = ("weighted_f1", "macro_f1", "accuracy", "invalid_rate")


def model_label(params: dict, name: str) -> str:
    source = get_str(profile(params, name), "model.source")
    return f"Qwen2 from scratch ({name} profile)" if source == "scratch" else source


@flow(name="report", log_prints=True)
def report_flow(params_file: str = "params.yaml") -> list[dict]:
    params = read_project_params(params_file)
    metrics_file = project_path(get_str(params, "evaluate.metrics_file"))
    if not metrics_file.is_file():
        raise ParamsError(f"{metrics_file} is missing: run the evaluate step first (`dvc repro evaluate`)")
    run_metrics = json.loads(metrics_file.read_text(encoding="utf-8"))
    name = run_metrics["profile"]
    models = {stage: m for stage, m in run_metrics.items() if isinstance(m, dict) and "weighted_f1" in m}
    baseline_file = project_path(get_str(params, "baseline.reports_dir")) / "metrics.json"
    baseline = json.loads(baseline_file.read_text(encoding="utf-8")) if baseline_file.is_file() else None
    rows = comparison_rows(
        models,
        {stage: model_label(params, name) for stage in models},
        baseline["test"] if baseline else None,
        baseline["method"] if baseline else "",
    )
    table = markdown_table(rows)
    out_dir = project_path(get_str(params, "report.dir"))
    with mlflow_run(params, "report", {"profile": name}), staged_dir(out_dir) as out:
        (out / "comparison.md").write_text(table, encoding="utf-8")
        with (out / "comparison.csv").open("w", encoding="utf-8", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(asdict(rows[0])))
            writer.writeheader()
            writer.writerows(asdict(r) for r in rows)
        comparison_bars(
            [(f"{r.method} ({r.model})", r.weighted_f1, r.source) for r in rows],
            title=f"Weighted F1 on the {run_metrics['rows']}-row {run_metrics['split']} split",
            path=out / "comparison.png",
            dpi=get_int(params, "reports.chart_dpi"),
        )
        mlflow.log_table({k: [getattr(r, k) for r in rows] for k in asdict(rows[0])}, "report/comparison.json")
        summary = {f"{stage}/test_{k}": m[k] for stage, m in models.items() for k in SUMMARY_METRICS if k in m}
        if baseline:
            summary["baseline/test_weighted_f1"] = baseline["test"]["weighted_f1"]
        mlflow.log_metrics(summary)
        mlflow.log_artifact(str(out / "comparison.png"), "report")
        mlflow.log_artifact(str(out / "comparison.md"), "report")
        if parent := parent_run_id():
            # the pipeline run carries the headline numbers: the experiment view compares runs by them
            client = mlflow.MlflowClient()
            for key, value in summary.items():
                client.log_metric(parent, key, value)
            client.log_artifact(parent, str(out / "comparison.png"), "report")
            client.log_artifact(parent, str(out / "comparison.md"), "report")
    get_run_logger().info("Comparison:\n%s", table)
    return [asdict(r) for r in rows]


if __name__ == "__main__":
    run(report_flow)
