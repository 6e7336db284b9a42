"""corpus: unlabelled Chinese text for pretraining, from a pinned registry package.

Reads ``corpus.sources`` inside the installed ``corpus.package`` (its version and each file's
SHA-256 checked), strips the annotation, normalises each line like the relation data, drops
short lines, lines with a chat-template control token, duplicates and every line that
overlaps a validation or test sentence, and splits the rest into training and held-out lines.

Outputs: ``corpus.out_dir/{train,heldout}.txt`` (a line each) and
``corpus.reports_dir/corpus_report.json``.
"""

from __future__ import annotations

import mlflow
from prefect import flow, get_run_logger

from flows.cli import run
from people_relation.infra.io import project_path, read_settings, staged_dir, write_json
from people_relation.infra.tracking import mlflow_run
from steps.corpus import clean_corpus, read_sources

REPORT_FILE = "corpus_report.json"


@flow(name="corpus", log_prints=True)
def corpus_flow(params_file: str = "params.yaml", run: str | None = None) -> dict:
    settings = read_settings(params_file, run)
    corpus = settings.corpus
    with mlflow_run(settings.tracking, settings.train.profile, "corpus", {"corpus": corpus}):
        result, report = clean_corpus(settings.task, corpus, settings.split, read_sources(corpus))
        with staged_dir(project_path(corpus.out_dir)) as out:
            for name, lines in (("train", result.train), ("heldout", result.heldout)):
                (out / f"{name}.txt").write_text("".join(line + "\n" for line in lines), encoding="utf-8")
        reports = project_path(corpus.reports_dir)
        reports.mkdir(parents=True, exist_ok=True)
        write_json(reports / REPORT_FILE, report)
        mlflow.log_metrics(
            {
                "train_lines": report["train"]["lines"],
                "train_chars": report["train"]["chars"],
                "heldout_lines": report["heldout"]["lines"],
                "heldout_chars": report["heldout"]["chars"],
                "distinct_chars": report["distinct_chars"],
            }
        )
        mlflow.log_artifact(str(reports / REPORT_FILE), "corpus")
    cov = report["coverage_of_training_split"]
    get_run_logger().info(
        "Corpus: %d training lines (%d characters), %d held out (%d); it holds %d of the training split's "
        "%d distinct characters",
        report["train"]["lines"],
        report["train"]["chars"],
        report["heldout"]["lines"],
        report["heldout"]["chars"],
        cov["covered_distinct_chars"],
        cov["dataset_distinct_chars"],
    )
    return report


if __name__ == "__main__":
    run(corpus_flow)
