"""Tasks of the prepare stage: load and validate the dataset, write the validated copy."""

from __future__ import annotations

from prefect import get_run_logger, task

from people_relation.infra.data import LoadedData, find_dataset, write_examples, write_provenance
from people_relation.infra.io import project_path, staged_dir, write_json
from people_relation.infra.plots import grouped_barh
from people_relation.settings import Data, Reports
from people_relation.task import Task

REPORT_FILE = "data_report.json"
CHART_FILE = "label_distribution.png"


@task(name="load-dataset", retries=0)
def load_dataset(task: Task, data: Data) -> LoadedData:
    loaded = find_dataset(task, data)
    for split, rows in loaded.splits.items():
        get_run_logger().info("%s: %d valid rows", split, len(rows))
    return loaded


@task(name="write-prepared")
def write_prepared(task: Task, data: Data, reports: Reports, loaded: LoadedData, report: dict) -> dict[str, str]:
    """The validated rows and the data report, each folder replaced whole or not at all."""
    data_dir = project_path(data.prepared_dir)
    report_dir = project_path(reports.data_dir)
    counts = {split: len(rows) for split, rows in loaded.splits.items()}
    with staged_dir(report_dir) as report_out, staged_dir(data_dir) as data_out:
        for split, rows in loaded.splits.items():
            write_examples(data_out / f"{split}.jsonl", rows)
        write_provenance(data_out / "source.json", loaded.provenance, counts)
        write_json(report_out / REPORT_FILE, report | {"source": loaded.provenance})
        grouped_barh(
            {split: report["label_counts"][split] for split in loaded.splits},
            title=f"{task.name.capitalize()} labels per split",
            xlabel="rows",
            path=report_out / CHART_FILE,
            dpi=reports.chart_dpi,
        )
    return {"report": str(report_dir / REPORT_FILE), "chart": str(report_dir / CHART_FILE), "data": str(data_dir)}
