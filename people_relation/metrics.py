"""Scores with scikit-learn; an invalid or non-label answer is a wrong prediction."""

from __future__ import annotations

from collections.abc import Sequence

from sklearn.metrics import accuracy_score, f1_score

from people_relation.labels import LABELS, is_label

INVALID = "<invalid>"


def normalise_prediction(answer: str | None) -> str:
    return answer if answer is not None and is_label(answer) else INVALID


def scores(gold: Sequence[str], predicted: Sequence[str | None]) -> dict[str, float]:
    """Weighted F1 (the published metric), macro F1, accuracy and the invalid-answer rate."""
    if len(gold) != len(predicted):
        raise ValueError(f"{len(gold)} gold labels but {len(predicted)} predictions")
    if not gold:
        raise ValueError("nothing to score")
    pred = [normalise_prediction(p) for p in predicted]
    labels = list(LABELS)
    return {
        "weighted_f1": float(f1_score(gold, pred, labels=labels, average="weighted", zero_division=0)),
        "macro_f1": float(f1_score(gold, pred, labels=labels, average="macro", zero_division=0)),
        "accuracy": float(accuracy_score(gold, pred)),
        "invalid_rate": sum(p == INVALID for p in pred) / len(pred),
    }
