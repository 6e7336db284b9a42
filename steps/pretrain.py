"""Tasks of the pretrain stage: the tokenizer and model built from the corpus and the training
split, and the model pretrained as a causal LM (``training/pretrain.py``)."""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path
from typing import Any

from prefect import get_run_logger, task

from people_relation.infra.data import read_examples
from people_relation.infra.io import claim_checkpoint_dir, fingerprint, project_path, staged_dir
from people_relation.infra.paths import split_file
from people_relation.settings import Corpus, Pretrain, Split
from people_relation.task import Task

CURVE_FILE = "perplexity.csv"
CHART_FILE = "perplexity.png"


def corpus_lines(corpus: Corpus, name: str) -> list[str]:
    path = project_path(corpus.out_dir) / f"{name}.txt"
    return path.read_text(encoding="utf-8").splitlines()


def budgeted(lines: list[str], max_chars: int | None, seed: int) -> list[str]:
    """``lines`` within ``max_chars`` characters: a seeded draw of whole lines, so a budget
    takes from every source alike (all of them when ``max_chars`` is null)."""
    if max_chars is None or sum(map(len, lines)) <= max_chars:
        return lines
    order = list(range(len(lines)))
    random.Random(seed).shuffle(order)
    kept, total = [], 0
    for i in order:
        if total + len(lines[i]) > max_chars:
            continue
        kept.append(i)
        total += len(lines[i])
    return [lines[i] for i in sorted(kept)]


@task(name="pretrain")
def pretrain_model(
    task: Task, corpus: Corpus, split: Split, pretrain: Pretrain, run_id: str | None
) -> tuple[Any, Any, dict[str, Any], list[dict[str, float]]]:
    """Build the tokenizer and the model, pretrain it (resuming an unfinished run) and return
    the model, its tokenizer, the stage's metrics and the held-out curve."""
    import mlflow
    import torch

    from people_relation.training.models import build_scratch_qwen2, parameter_count
    from people_relation.training.pretrain import heldout_loss, token_blocks
    from people_relation.training.pretrain import pretrain as run_pretraining
    from people_relation.training.tokenizer import build_tokenizer

    log = get_run_logger()
    train_lines = budgeted(corpus_lines(corpus, "train"), pretrain.max_train_chars, pretrain.seed)
    heldout_lines = corpus_lines(corpus, "heldout")
    counts = Counter(ch for line in train_lines for ch in line)
    frequent = "".join(ch for ch, n in counts.items() if n >= pretrain.min_char_count)
    rows = read_examples(split_file(split, "train"))
    tokenizer = build_tokenizer(task, [frequent, *(v for e in rows for v in e.key)])
    model = build_scratch_qwen2(tokenizer, pretrain.arch, pretrain.seed)
    train_blocks = token_blocks(tokenizer, train_lines, pretrain.block_size)
    heldout_blocks = token_blocks(tokenizer, heldout_lines, pretrain.block_size)
    unk = (heldout_blocks == tokenizer.unk_token_id).float().mean().item()
    log.info(
        "A %d-parameter Qwen2, %d-token vocabulary; %d training blocks of %d tokens (%d characters), %d held out",
        parameter_count(model),
        len(tokenizer),
        len(train_blocks),
        pretrain.block_size,
        sum(map(len, train_lines)),
        len(heldout_blocks),
    )
    state_dir = project_path(pretrain.state_dir)
    claim_checkpoint_dir(
        state_dir, fingerprint(pretrain.model_dump(), train_lines, heldout_lines, [e.id for e in rows])
    )
    start_loss = heldout_loss(model, heldout_blocks, pretrain.batch_size * 2, pretrain.bf16)

    def on_log(metrics: dict[str, float], step: int) -> None:
        if run_id:
            mlflow.log_metrics({f"pretrain/{k}": v for k, v in metrics.items()}, step=step, run_id=run_id)

    torch.manual_seed(pretrain.seed)
    result = run_pretraining(model, train_blocks, heldout_blocks, pretrain, state_dir, on_log)
    final = result.curve[-1]
    metrics = {
        "parameters": parameter_count(model),
        "vocab_size": len(tokenizer),
        "train_chars": sum(map(len, train_lines)),
        "train_tokens": train_blocks.numel(),
        "heldout_tokens": heldout_blocks.numel(),
        "heldout_unknown_share": round(unk, 5),
        "steps": result.steps,
        "passes": pretrain.passes,
        "heldout_perplexity_start": round(2.718281828459045**start_loss, 2),
        "heldout_loss": round(final["heldout_loss"], 5),
        "heldout_perplexity": round(final["heldout_perplexity"], 3),
    }
    curve = [
        {"step": 0, "passes": 0.0, "heldout_loss": start_loss, "heldout_perplexity": 2.718281828459045**start_loss}
    ]
    log.info(
        "Pretrained %d steps in %.0f s (this run): held-out perplexity %.1f (%.0f before)",
        result.steps,
        result.seconds,
        metrics["heldout_perplexity"],
        metrics["heldout_perplexity_start"],
    )
    if run_id:
        mlflow.log_metric("pretrain/seconds", result.seconds, run_id=run_id)
    return model, tokenizer, metrics, curve + result.curve


@task(name="save-pretrained-model")
def save_pretrained(model: Any, tokenizer: Any, out: Path) -> None:
    """The model and tokenizer saved like a hub model (``out`` replaced only when whole)."""
    from people_relation.training.models import save_model

    with staged_dir(out) as staging:
        save_model(model, tokenizer, staging)


def state_dir(pretrain: Pretrain) -> Path:
    return project_path(pretrain.state_dir)
