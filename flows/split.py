"""split: train / validation / test rows from the prepared data.

Outputs: split.out_dir/{train,validation,test}.jsonl and reports.split_dir/split_report.json,
label_distribution.png.
"""

from __future__ import annotations

import mlflow
from prefect import flow, get_run_logger, task

from flows.cli import run
from people_relation.infra.data import read_examples, write_examples
from people_relation.infra.io import project_path, read_project_params, staged_dir, write_json
from people_relation.infra.plots import grouped_barh
from people_relation.infra.tracking import mlflow_run
from people_relation.params import get, get_float, get_int, get_str
from people_relation.report import data_report
from people_relation.split import STRATEGIES, make_splits

REPORT_FILE = "split_report.json"
CHART_FILE = "label_distribution.png"


@task(name="make-splits")
def split_rows(params: dict) -> dict[str, list]:
    prepared = project_path(get_str(params, "data.prepared_dir"))
    return make_splits(
        read_examples(prepared / "train.jsonl"),
        read_examples(prepared / "test.jsonl"),
        strategy=get_str(params, "split.strategy", STRATEGIES),
        test_fraction=get_float(params, "split.test_fraction"),
        validation_fraction=get_float(params, "split.validation_fraction"),
        seed=get_int(params, "split.seed"),
    )


@task(name="write-splits")
def write_splits(params: dict, splits: dict[str, list], report: dict) -> dict[str, str]:
    out_dir = project_path(get_str(params, "split.out_dir"))
    report_dir = project_path(get_str(params, "reports.split_dir"))
    with staged_dir(report_dir) as reports, staged_dir(out_dir) as out:
        for name, rows in splits.items():
            write_examples(out / f"{name}.jsonl", rows)
        write_json(reports / REPORT_FILE, report)
        grouped_barh(
            {name: report["label_counts"][name] for name in splits},
            title=f"Relation labels per split ({get_str(params, 'split.strategy')})",
            xlabel="rows",
            path=reports / CHART_FILE,
            dpi=get_int(params, "reports.chart_dpi"),
        )
    return {"dir": str(out_dir), "report": str(report_dir / REPORT_FILE), "chart": str(report_dir / CHART_FILE)}


@flow(name="split", log_prints=True)
def split_flow(params_file: str = "params.yaml") -> dict[str, str]:
    logger = get_run_logger()
    params = read_project_params(params_file)
    with mlflow_run(params, "split", {"split": get(params, "split")}):
        splits = split_rows(params)
        report = data_report(splits)
        for name, rows in splits.items():
            logger.info("%s: %d rows", name, len(rows))
        outputs = write_splits(params, splits, report)
        mlflow.log_metrics({f"rows.{k}": v for k, v in report["rows"].items()})
        mlflow.log_artifact(outputs["report"], "split")
        mlflow.log_artifact(outputs["chart"], "split")
    return outputs


if __name__ == "__main__":
    run(split_flow)
