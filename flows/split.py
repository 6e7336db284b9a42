"""split: train / validation / test rows from the prepared data.

Outputs: split.out_dir/{train,validation,test}.jsonl and reports.split_dir/split_report.json,
label_distribution.png.
"""

from __future__ import annotations

import mlflow
from prefect import flow, get_run_logger

from flows.cli import run
from people_relation.infra.io import read_settings
from people_relation.infra.tracking import mlflow_run
from people_relation.report import data_report
from steps.split import split_rows, write_splits


@flow(name="split", log_prints=True)
def split_flow(params_file: str = "params.yaml", run: str | None = None) -> dict[str, str]:
    logger = get_run_logger()
    settings = read_settings(params_file, run)
    with mlflow_run(settings.tracking, settings.train.profile, "split", {"split": settings.split}):
        splits = split_rows(settings.data, settings.split)
        report = data_report(splits, settings.task)
        for name, rows in splits.items():
            logger.info("%s: %d rows", name, len(rows))
        outputs = write_splits(settings.task, settings.split, settings.reports, splits, report)
        mlflow.log_metrics({f"rows.{k}": v for k, v in report["rows"].items()})
        mlflow.log_artifact(outputs["report"], "split")
        mlflow.log_artifact(outputs["chart"], "split")
    return outputs


if __name__ == "__main__":
    run(split_flow)
