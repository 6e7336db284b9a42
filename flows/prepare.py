"""prepare: load and validate the dataset, write the validated copy and the data report.

Outputs (written only when every row is valid; otherwise nothing changes on disk):
  data.prepared_dir/{train,test}.jsonl, source.json
  reports.data_dir/data_report.json, label_distribution.png
"""

from __future__ import annotations

import mlflow
from prefect import flow, get_run_logger

from flows.cli import run
from people_relation.infra.io import read_settings
from people_relation.infra.tracking import mlflow_run
from people_relation.report import data_report
from steps.prepare import load_dataset, write_prepared


@flow(name="prepare", log_prints=True)
def prepare_flow(params_file: str = "params.yaml", run: str | None = None) -> dict[str, str]:
    settings = read_settings(params_file, run)
    with mlflow_run(settings.tracking, settings.train.profile, "prepare", {"data": settings.data}):
        loaded = load_dataset(settings.task, settings.data)
        report = data_report(loaded.splits, settings.task)
        outputs = write_prepared(settings.task, settings.data, settings.reports, loaded, report)
        leakage = report.get("leakage", {}).get("train_vs_test", {})  # none without published test rows
        mlflow.log_metrics(
            {f"rows.{k}": v for k, v in report["rows"].items()}
            | {
                "duplicates.repeated_rows": report["duplicates"]["repeated_rows"],
                "duplicates.conflicting_keys": report["duplicates"]["keys_with_conflicting_labels"],
            }
            | {f"leakage.{k}": v for k, v in leakage.items() if k in ("shared_keys", "shared_texts")}
        )
        mlflow.log_artifact(outputs["report"], "data")
        mlflow.log_artifact(outputs["chart"], "data")
        mlflow.log_dict(loaded.provenance, "data/source.json")
    get_run_logger().info("Wrote %s and the data report %s", outputs["data"], outputs["report"])
    return outputs


if __name__ == "__main__":
    run(prepare_flow)
