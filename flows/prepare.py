"""prepare: load and validate the dataset, write the validated copy and the data report.

Outputs (written only when every row is valid; otherwise nothing changes on disk):
  data.prepared_dir/{train,test}.jsonl, source.json
  reports.data_dir/data_report.json, label_distribution.png
"""

from __future__ import annotations

import mlflow
from prefect import flow, get_run_logger, task

from flows.cli import run
from people_relation.infra.data import LoadedData, load_dataset, write_examples, write_provenance
from people_relation.infra.io import project_path, read_project_params, staged_dir, write_json
from people_relation.infra.plots import grouped_barh
from people_relation.infra.tracking import mlflow_run
from people_relation.params import get, get_int, get_str
from people_relation.report import data_report

REPORT_FILE = "data_report.json"
CHART_FILE = "label_distribution.png"


@task(name="write-prepared")
def write_prepared(params: dict, loaded: LoadedData, report: dict) -> dict[str, str]:
    data_dir = project_path(get_str(params, "data.prepared_dir"))
    report_dir = project_path(get_str(params, "reports.data_dir"))
    counts = {split: len(rows) for split, rows in loaded.splits.items()}
    with staged_dir(report_dir) as reports, staged_dir(data_dir) as data:
        for split, rows in loaded.splits.items():
            write_examples(data / f"{split}.jsonl", rows)
        write_provenance(data / "source.json", loaded.provenance, counts)
        write_json(reports / REPORT_FILE, report | {"source": loaded.provenance})
        grouped_barh(
            {split: report["label_counts"][split] for split in loaded.splits},
            title="Relation labels per split",
            xlabel="rows",
            path=reports / CHART_FILE,
            dpi=get_int(params, "reports.chart_dpi"),
        )
    return {"report": str(report_dir / REPORT_FILE), "chart": str(report_dir / CHART_FILE), "data": str(data_dir)}


@flow(name="prepare", log_prints=True)
def prepare_flow(params_file: str = "params.yaml") -> dict[str, str]:
    logger = get_run_logger()
    params = read_project_params(params_file)
    with mlflow_run(params, "prepare", {"data": get(params, "data")}):
        loaded = load_dataset(get(params, "data"))
        for split, rows in loaded.splits.items():
            logger.info("%s: %d valid rows", split, len(rows))
        report = data_report(loaded.splits)
        outputs = write_prepared(params, loaded, report)
        mlflow.log_metrics(
            {f"rows.{k}": v for k, v in report["rows"].items()}
            | {
                "duplicates.repeated_rows": report["duplicates"]["repeated_rows"],
                "duplicates.conflicting_keys": report["duplicates"]["keys_with_conflicting_labels"],
                "leakage.shared_keys": report["leakage"]["train_vs_test"]["shared_keys"],
                "leakage.shared_texts": report["leakage"]["train_vs_test"]["shared_texts"],
            }
        )
        mlflow.log_artifact(outputs["report"], "data")
        mlflow.log_artifact(outputs["chart"], "data")
        mlflow.log_dict(loaded.provenance, "data/source.json")
    logger.info("Wrote %s and the data report %s", outputs["data"], outputs["report"])
    return outputs


if __name__ == "__main__":
    run(prepare_flow)
