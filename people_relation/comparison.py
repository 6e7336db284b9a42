"""The F1 comparison: this run's models, a classical baseline measured here, and the
published results on the same 776-row test set (quoted from the data README, not re-run)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Row:
    method: str
    model: str
    weighted_f1: float
    source: str  # "this run", "measured here" or "published"


# Weighted F1 on the published 776-row test set, as the data README lists them.
PUBLISHED: tuple[Row, ...] = (
    Row("BERT features + BiGRU + attention", "BiGRU+Attention", 0.7897, "published"),
    Row("BERT [CLS] fine-tuning", "BERT", 0.8269, "published"),
    Row("R-BERT", "chinese-roberta-wwm-ext", 0.8535, "published"),
    Row("R-BERT", "chinese-roberta-wwm-ext-large", 0.8722, "published"),
    Row("QLoRA SFT (max_seq_length 256, 5 epochs)", "Baichuan-7B", 0.8825, "published"),
    Row("QLoRA SFT (max_seq_length 256, 10 epochs)", "Baichuan-7B", 0.8915, "published"),
    Row("GRPO, pure RL, 500 steps, 4xA800, DeepSpeed ZeRO-3", "Qwen2.5-7B-Instruct", 0.8884, "published"),
)


# What each evaluated model of this run is, in the table's words.
STAGE_METHODS = {
    "base": "no training (served by vLLM)",
    "warmup": "supervised warm-up (served by vLLM)",
    "grpo": "warm-up + GRPO (served by vLLM)",
}


def comparison_rows(
    models: Mapping[str, Mapping[str, float]],
    model_names: Mapping[str, str],
    baseline: Mapping[str, float] | None,
    baseline_name: str,
    published: Sequence[Row] = PUBLISHED,
) -> list[Row]:
    """All rows, best weighted F1 first. ``models`` maps a stage (warmup, grpo) to its
    scores, ``model_names`` a stage to the model it names."""
    rows = [
        Row(STAGE_METHODS.get(stage, stage), model_names.get(stage, stage), float(m["weighted_f1"]), "this run")
        for stage, m in models.items()
    ]
    if baseline is not None:
        rows.append(Row(baseline_name, "scikit-learn", float(baseline["weighted_f1"]), "measured here"))
    rows.extend(published)
    return sorted(rows, key=lambda r: r.weighted_f1, reverse=True)


def markdown_table(rows: Sequence[Row]) -> str:
    lines = ["| method | model | weighted F1 | source |", "|---|---|---|---|"]
    lines += [f"| {r.method} | {r.model} | {r.weighted_f1 * 100:.2f}% | {r.source} |" for r in rows]
    return "\n".join(lines) + "\n"
