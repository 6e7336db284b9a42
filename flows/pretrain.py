"""pretrain: the CPU policy pretrained as a causal language model on the corpus.

A character tokenizer of the corpus and the training split (the labels, format tags and
prompt pieces as single tokens), a small Qwen2 of ``pretrain.arch``, trained on
``corpus.out_dir/train.txt`` in blocks of ``pretrain.block_size`` tokens, its held-out
perplexity measured along the way. Resumable from ``pretrain.state_dir``. A profile with
``model.source: pretrained`` starts from its output.

Outputs: ``pretrain.out_dir`` (model and tokenizer, saved like a hub model) and
``pretrain.reports_dir/{metrics.json,perplexity.csv,perplexity.png}``.
"""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import mlflow
from prefect import flow

from flows.cli import run
from people_relation.infra.io import project_path, read_settings, write_json
from people_relation.infra.plots import line_chart
from people_relation.infra.tracking import mlflow_run
from steps.pretrain import CHART_FILE, CURVE_FILE, pretrain_model, save_pretrained, state_dir

METRICS_FILE = "metrics.json"


@flow(name="pretrain", log_prints=True)
def pretrain_flow(params_file: str = "params.yaml", run: str | None = None) -> dict:
    settings = read_settings(params_file, run)
    pretrain = settings.pretrain
    with mlflow_run(settings.tracking, settings.train.profile, "pretrain", {"pretrain": pretrain}) as active:
        model, tokenizer, metrics, curve = pretrain_model(
            settings.task, settings.corpus, settings.split, pretrain, active.info.run_id
        )
        save_pretrained(model, tokenizer, project_path(pretrain.out_dir))
        reports = project_path(pretrain.reports_dir)
        reports.mkdir(parents=True, exist_ok=True)
        write_json(reports / METRICS_FILE, metrics)
        write_curve(reports / CURVE_FILE, curve)
        line_chart(
            curve,
            x="passes",
            ys={"heldout_perplexity": "held-out perplexity (per token)"},
            title=f"Pretraining on the corpus: {metrics['parameters'] / 1e6:.1f} M parameters",
            path=reports / CHART_FILE,
            dpi=settings.reports.chart_dpi,
            ylabel="perplexity (log scale)",
            log_y=True,
        )
        mlflow.log_metrics({k: v for k, v in metrics.items() if isinstance(v, int | float)})
        for name in (METRICS_FILE, CURVE_FILE, CHART_FILE):
            mlflow.log_artifact(str(reports / name), "pretrain")
    # the model is saved: the resumable state is spent
    shutil.rmtree(state_dir(pretrain), ignore_errors=True)
    return metrics


def write_curve(path: Path, curve: list[dict[str, float]]) -> None:
    with path.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["step", "passes", "train_loss", "heldout_loss", "heldout_perplexity"])
        writer.writeheader()
        for point in curve:
            writer.writerow({k: round(v, 5) if isinstance(v, float) else v for k, v in point.items()})


if __name__ == "__main__":
    run(pretrain_flow)
