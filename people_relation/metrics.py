"""Scores with scikit-learn over a task's labels; an invalid or non-label answer is a wrong
prediction. Every function takes the labels first (``task.labels``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sklearn.metrics import accuracy_score, classification_report, confusion_matrix, f1_score

INVALID = "<invalid>"
REPORT_DIGITS = 4  # as the published classification reports


def normalise_prediction(labels: Sequence[str], answer: str | None) -> str:
    return answer if answer is not None and answer in labels else INVALID


def _checked(labels: Sequence[str], gold: Sequence[str], predicted: Sequence[str | None]) -> list[str]:
    if len(gold) != len(predicted):
        raise ValueError(f"{len(gold)} gold labels but {len(predicted)} predictions")
    if not gold:
        raise ValueError("nothing to score")
    known = frozenset(labels)
    return [p if p is not None and p in known else INVALID for p in predicted]


def scores(labels: Sequence[str], gold: Sequence[str], predicted: Sequence[str | None]) -> dict[str, float]:
    """Weighted F1 (the published metric), macro F1, accuracy and the invalid-answer rate."""
    pred = _checked(labels, gold, predicted)
    labels = list(labels)
    return {
        "weighted_f1": float(f1_score(gold, pred, labels=labels, average="weighted", zero_division=0)),
        "macro_f1": float(f1_score(gold, pred, labels=labels, average="macro", zero_division=0)),
        "accuracy": float(accuracy_score(gold, pred)),
        "invalid_rate": sum(p == INVALID for p in pred) / len(pred),
    }


def report_text(labels: Sequence[str], gold: Sequence[str], predicted: Sequence[str | None]) -> str:
    """scikit-learn's classification report over the labels, 4 digits."""
    pred = _checked(labels, gold, predicted)
    return classification_report(gold, pred, labels=list(labels), digits=REPORT_DIGITS, zero_division=0)


def confusion(
    labels: Sequence[str], gold: Sequence[str], predicted: Sequence[str | None]
) -> tuple[list[str], list[list[int]]]:
    """Rows: gold labels; columns: the labels plus ``<invalid>`` (a row never has gold invalid)."""
    pred = _checked(labels, gold, predicted)
    columns = [*labels, INVALID]
    matrix = confusion_matrix(gold, pred, labels=columns)
    return columns, [[int(v) for v in row] for row in matrix[: len(labels)]]


def per_label_f1(labels: Sequence[str], gold: Sequence[str], predicted: Sequence[str | None]) -> dict[str, float]:
    """F1 of each label (an invalid answer is wrong)."""
    pred = _checked(labels, gold, predicted)
    values = f1_score(gold, pred, labels=list(labels), average=None, zero_division=0)
    return {label: float(v) for label, v in zip(labels, values, strict=True)}


def resampled_weighted_f1(
    labels: Sequence[str], gold: Sequence[str], predicted: Sequence[str | None], draws: Any
) -> Any:
    """The weighted F1 of each resample: ``draws`` is an (R, n) array of row indices. Scored
    as :func:`scores` scores (the labels, an invalid answer wrong), from confusion counts."""
    import numpy as np

    pred = _checked(labels, gold, predicted)
    classes = [*labels, INVALID]
    index = {c: i for i, c in enumerate(classes)}
    g = np.array([index[x] for x in gold])[draws]
    p = np.array([index[x] for x in pred])[draws]
    rows = np.arange(len(draws))[:, None]

    def counts(which: Any, weight: Any = 1.0) -> Any:
        out = np.zeros((len(draws), len(classes)))
        np.add.at(out, (rows, which), weight)
        return out

    true, said, hit = counts(g), counts(p), counts(g, (g == p).astype(float))
    k = len(labels)
    denominator = (true + said)[:, :k]
    f1 = np.divide(2 * hit[:, :k], denominator, out=np.zeros_like(denominator), where=denominator > 0)
    return (f1 * true[:, :k]).sum(axis=1) / draws.shape[1]


def bootstrap_interval(
    labels: Sequence[str], gold: Sequence[str], predicted: Sequence[str | None], resamples: int, level: float, seed: int
) -> tuple[float, float]:
    """Percentile interval of the weighted F1 when the rows are resampled with replacement
    (``resamples`` draws from a generator seeded with ``seed``): how far the score moves
    with the sample of rows alone."""
    import numpy as np

    draws = np.random.default_rng(seed).integers(0, len(gold), size=(resamples, len(gold)))
    tail = (1 - level) / 2
    low, high = np.quantile(resampled_weighted_f1(labels, gold, predicted, draws), [tail, 1 - tail])
    return float(low), float(high)


def bootstrap_difference(
    labels: Sequence[str],
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
    diffs = resampled_weighted_f1(labels, gold, first, draws) - resampled_weighted_f1(labels, gold, second, draws)
    tail = (1 - level) / 2
    low, high = np.quantile(diffs, [tail, 1 - tail])
    point = scores(labels, gold, first)["weighted_f1"] - scores(labels, gold, second)["weighted_f1"]
    return float(point), float(low), float(high)
