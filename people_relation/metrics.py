"""Scores with scikit-learn; an invalid or non-label answer is a wrong prediction."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sklearn.metrics import accuracy_score, classification_report, confusion_matrix, f1_score

from people_relation.labels import LABELS, is_label

INVALID = "<invalid>"
REPORT_DIGITS = 4  # as the published classification reports


def normalise_prediction(answer: str | None) -> str:
    return answer if answer is not None and is_label(answer) else INVALID


def _checked(gold: Sequence[str], predicted: Sequence[str | None]) -> list[str]:
    if len(gold) != len(predicted):
        raise ValueError(f"{len(gold)} gold labels but {len(predicted)} predictions")
    if not gold:
        raise ValueError("nothing to score")
    return [normalise_prediction(p) for p in predicted]


def scores(gold: Sequence[str], predicted: Sequence[str | None]) -> dict[str, float]:
    """Weighted F1 (the published metric), macro F1, accuracy and the invalid-answer rate."""
    pred = _checked(gold, predicted)
    labels = list(LABELS)
    return {
        "weighted_f1": float(f1_score(gold, pred, labels=labels, average="weighted", zero_division=0)),
        "macro_f1": float(f1_score(gold, pred, labels=labels, average="macro", zero_division=0)),
        "accuracy": float(accuracy_score(gold, pred)),
        "invalid_rate": sum(p == INVALID for p in pred) / len(pred),
    }


def report_text(gold: Sequence[str], predicted: Sequence[str | None]) -> str:
    """scikit-learn's classification report over the 14 labels, 4 digits."""
    pred = _checked(gold, predicted)
    return classification_report(gold, pred, labels=list(LABELS), digits=REPORT_DIGITS, zero_division=0)


def confusion(gold: Sequence[str], predicted: Sequence[str | None]) -> tuple[list[str], list[list[int]]]:
    """Rows: gold labels; columns: the labels plus ``<invalid>`` (a row never has gold invalid)."""
    pred = _checked(gold, predicted)
    columns = [*LABELS, INVALID]
    matrix = confusion_matrix(gold, pred, labels=columns)
    return columns, [[int(v) for v in row] for row in matrix[: len(LABELS)]]


def per_label_f1(gold: Sequence[str], predicted: Sequence[str | None]) -> dict[str, float]:
    """F1 of each of the 14 labels (an invalid answer is wrong)."""
    pred = _checked(gold, predicted)
    values = f1_score(gold, pred, labels=list(LABELS), average=None, zero_division=0)
    return {label: float(v) for label, v in zip(LABELS, values, strict=True)}


def resampled_weighted_f1(gold: Sequence[str], predicted: Sequence[str | None], draws: Any) -> Any:
    """The weighted F1 of each resample: ``draws`` is an (R, n) array of row indices. Scored
    as :func:`scores` scores (the 14 labels, an invalid answer wrong), from confusion counts."""
    import numpy as np

    pred = _checked(gold, predicted)
    classes = [*LABELS, INVALID]
    index = {c: i for i, c in enumerate(classes)}
    g = np.array([index[x] for x in gold])[draws]
    p = np.array([index[x] for x in pred])[draws]
    rows = np.arange(len(draws))[:, None]

    def counts(which: Any, weight: Any = 1.0) -> Any:
        out = np.zeros((len(draws), len(classes)))
        np.add.at(out, (rows, which), weight)
        return out

    true, said, hit = counts(g), counts(p), counts(g, (g == p).astype(float))
    denominator = (true + said)[:, : len(LABELS)]
    f1 = np.divide(2 * hit[:, : len(LABELS)], denominator, out=np.zeros_like(denominator), where=denominator > 0)
    return (f1 * true[:, : len(LABELS)]).sum(axis=1) / draws.shape[1]


def bootstrap_interval(
    gold: Sequence[str], predicted: Sequence[str | None], resamples: int, level: float, seed: int
) -> tuple[float, float]:
    """Percentile interval of the weighted F1 when the rows are resampled with replacement
    (``resamples`` draws from a generator seeded with ``seed``): how far the score moves
    with the sample of rows alone."""
    import numpy as np

    draws = np.random.default_rng(seed).integers(0, len(gold), size=(resamples, len(gold)))
    tail = (1 - level) / 2
    low, high = np.quantile(resampled_weighted_f1(gold, predicted, draws), [tail, 1 - tail])
    return float(low), float(high)


def bootstrap_difference(
    gold: Sequence[str],
    first: Sequence[str | None],
    second: Sequence[str | None],
    resamples: int,
    level: float,
    seed: int,
) -> tuple[float, float, float]:
    """The weighted F1 of ``first`` minus that of ``second`` on the same rows, and its
    percentile interval when the rows are resampled (the same draws for both: paired, so the
    rows both models get right or wrong cancel out)."""
    import numpy as np

    draws = np.random.default_rng(seed).integers(0, len(gold), size=(resamples, len(gold)))
    diffs = resampled_weighted_f1(gold, first, draws) - resampled_weighted_f1(gold, second, draws)
    tail = (1 - level) / 2
    low, high = np.quantile(diffs, [tail, 1 - tail])
    point = scores(gold, first)["weighted_f1"] - scores(gold, second)["weighted_f1"]
    return float(point), float(low), float(high)
