"""What a policy answers, summarised: the signals that show GRPO collapsing.

A policy that drifts to one answer (the majority label 不知道 here) earns rewards on the
rows whose gold is that label while it forgets the others. These pure functions turn a
batch of answers into the numbers that reveal it, and :func:`collapsed_label` is the rule
that calls a collapse: one label's share of the answers above both ``ratio`` times its
share of the gold labels and ``min_share``, for ``patience`` evaluations in a row.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from people_relation.rewards import log_key


def answer_shares(labels: Sequence[str], answers: Sequence[str | None]) -> dict[str, float]:
    """Share of all answers (invalid ones included in the total) per label, for the
    labels answered at least once."""
    counts = Counter(a for a in answers if a in labels)
    return {label: n / len(answers) for label, n in counts.items()} if answers else {}


def answer_entropy(labels: Sequence[str], answers: Sequence[str | None]) -> float:
    """Entropy of the distribution of valid answers over the labels, divided by its
    maximum: 1 when every label is answered equally often, 0 when one label takes all
    (or nothing valid was answered)."""
    counts = Counter(a for a in answers if a in labels)
    total = sum(counts.values())
    if total == 0 or len(labels) < 2:
        return 0.0
    h = -sum(n / total * math.log(n / total) for n in counts.values())
    return h / math.log(len(labels))


def answer_summary(labels: Sequence[str], answers: Sequence[str | None]) -> dict[str, float]:
    """Top label's share, entropy and how many distinct labels were answered."""
    shares = answer_shares(labels, answers)
    return {
        "top_share": max(shares.values(), default=0.0),
        "entropy": answer_entropy(labels, answers),
        "labels_answered": float(len(shares)),
    }


def per_label_mean(golds: Sequence[str], values: Sequence[float]) -> dict[str, float]:
    """Mean of ``values`` per gold label (the label reward of each relation)."""
    sums: dict[str, list[float]] = {}
    for gold, value in zip(golds, values, strict=True):
        sums.setdefault(gold, []).append(value)
    return {gold: sum(v) / len(v) for gold, v in sums.items()}


@dataclass(frozen=True)
class CollapseRule:
    ratio: float  # a label's answer share over this many times its gold share ...
    min_share: float  # ... and over this share of all answers ...
    patience: int  # ... for this many evaluations in a row

    def __post_init__(self) -> None:
        if self.ratio <= 0 or not 0 < self.min_share <= 1 or self.patience < 1:
            raise ValueError(f"collapse guard: ratio must be > 0, min_share in (0, 1] and patience >= 1; got {self}")


def over_limit(shares: Mapping[str, float], gold_shares: Mapping[str, float], rule: CollapseRule) -> str | None:
    """The label whose share of one evaluation's answers exceeds the rule's limit, if any."""
    worst = None
    for label, share in shares.items():
        limit = max(rule.ratio * gold_shares.get(label, 0.0), rule.min_share)
        if share > limit and (worst is None or share > shares[worst]):
            worst = label
    return worst


def collapsed_label(over: Sequence[str | None], rule: CollapseRule) -> str | None:
    """Given the over-limit label of each evaluation so far (None: none), the label that
    has been over its limit in each of the last ``patience`` evaluations."""
    recent = list(over[-rule.patience :])
    if len(recent) < rule.patience or recent[0] is None or any(label != recent[0] for label in recent):
        return None
    return recent[0]


def reward_summary(history: list[dict[str, float]], window: int, rewards: Sequence[str]) -> dict[str, float | None]:
    """First and last logged total rewards, and the means of the total and of each of
    ``rewards`` (by name) over the first and the last ``window`` steps (single steps are noisy)."""

    def mean(rows: list[dict[str, float]], key: str) -> float | None:
        values = [r[key] for r in rows if key in r]
        return sum(values) / len(values) if values else None

    summary: dict[str, float | None] = {
        "first": history[0].get("reward") if history else None,
        "last": history[-1].get("reward") if history else None,
    }
    for key, short in (("reward", "reward"), *((log_key(name), name) for name in rewards)):
        summary[f"{short}_first_{window}_mean"] = mean(history[:window], key)
        summary[f"{short}_last_{window}_mean"] = mean(history[-window:], key)
    return summary


def validation_summary(curve: list[dict[str, float]], key: str = "eval_greedy_weighted_f1") -> dict[str, Any]:
    """Greedy weighted F1 at the first (start model), best and last evaluation during GRPO."""
    points = [r for r in curve if key in r]
    if not points:
        return {"evaluations": 0}
    best = max(points, key=lambda r: r[key])
    return {
        "evaluations": len(points),
        "first_step": int(points[0]["step"]),
        "first_weighted_f1": points[0][key],
        "best_step": int(best["step"]),
        "best_weighted_f1": best[key],
        "last_step": int(points[-1]["step"]),
        "last_weighted_f1": points[-1][key],
    }
