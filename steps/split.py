"""Tasks of the split stage: train / validation / test rows from the prepared data."""

from __future__ import annotations

from prefect import task

from people_relation.infra.data import read_examples, write_examples
from people_relation.infra.io import project_path, staged_dir, write_json
from people_relation.infra.plots import grouped_barh
from people_relation.params import ParamsError
from people_relation.settings import Data, Reports, Split
from people_relation.split import make_splits
from people_relation.task import Task

REPORT_FILE = "split_report.json"
CHART_FILE = "label_distribution.png"


@task(name="make-splits")
def split_rows(data: Data, split: Split) -> dict[str, list]:
    prepared = project_path(data.prepared_dir)
    test = prepared / "test.jsonl"  # absent when the task's data has no published test rows
    try:
        return make_splits(
            read_examples(prepared / "train.jsonl"),
            read_examples(test) if test.is_file() else [],
            strategy=split.strategy,
            test_fraction=split.test_fraction,
            validation_fraction=split.validation_fraction,
            seed=split.seed,
        )
    except ValueError as err:
        raise ParamsError(f"params.yaml: {err}") from None


@task(name="write-splits")
def write_splits(task: Task, split: Split, reports: Reports, splits: dict[str, list], report: dict) -> dict[str, str]:
    out_dir = project_path(split.out_dir)
    report_dir = project_path(reports.split_dir)
    with staged_dir(report_dir) as report_out, staged_dir(out_dir) as out:
        for name, rows in splits.items():
            write_examples(out / f"{name}.jsonl", rows)
        write_json(report_out / REPORT_FILE, report)
        grouped_barh(
            {name: report["label_counts"][name] for name in splits},
            title=f"{task.name.capitalize()} labels per split ({split.strategy})",
            xlabel="rows",
            path=report_out / CHART_FILE,
            dpi=reports.chart_dpi,
        )
    return {"dir": str(out_dir), "report": str(report_dir / REPORT_FILE), "chart": str(report_dir / CHART_FILE)}
