"""Train/validation/test splits.

* ``published``: the test set is the published 776-row ``test.csv``; train is ``train.csv``.
* ``stratified``: all rows are pooled and re-split by label with a seed.

Either way a validation set is carved from the training rows, stratified by label, with a
fixed seed: settings are chosen on validation, and the test set only reports. Rows that
share an input (text and pair of people) always land on the same side of a split.
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Sequence

from people_relation.dataset import Example

STRATEGIES = ("published", "stratified")


def stratified_holdout(examples: Sequence[Example], fraction: float, seed: int) -> tuple[list[Example], list[Example]]:
    """Split ``examples`` into (kept, held out) with about ``fraction`` of each label held out.

    Rows sharing a key move together; a group counts under its first row's label. The
    result is a pure function of the rows, ``fraction`` and ``seed``; input order is kept
    within each side.
    """
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"a split fraction must be in [0, 1), got {fraction}")
    groups: dict[tuple[str, ...], list[Example]] = defaultdict(list)
    for e in examples:
        groups[e.key].append(e)
    by_label: dict[str, list[tuple[str, ...]]] = defaultdict(list)
    for key, rows in groups.items():
        by_label[rows[0].label].append(key)
    rng = random.Random(seed)
    held: set[tuple[str, ...]] = set()
    for label in sorted(by_label):
        keys = sorted(by_label[label])
        rng.shuffle(keys)
        target = round(sum(len(groups[k]) for k in keys) * fraction)
        taken = 0
        for key in keys:
            if taken >= target:
                break
            held.add(key)
            taken += len(groups[key])
    kept = [e for e in examples if e.key not in held]
    out = [e for e in examples if e.key in held]
    return kept, out


def make_splits(
    train: Sequence[Example],
    test: Sequence[Example],
    strategy: str,
    test_fraction: float,
    validation_fraction: float,
    seed: int,
) -> dict[str, list[Example]]:
    """``{"train", "validation", "test"}`` rows for ``strategy``."""
    if strategy == "published":
        if not test:
            raise ValueError(
                "split.strategy 'published' keeps the task's published test rows, and its data has none: "
                "use split.strategy 'stratified' (the test rows are drawn with split.test_fraction)"
            )
        fit, final_test = list(train), list(test)
    elif strategy == "stratified":
        fit, final_test = stratified_holdout([*train, *test], test_fraction, seed)
    else:
        raise ValueError(f"unknown split strategy {strategy!r}; use one of {', '.join(STRATEGIES)}")
    fit, validation = stratified_holdout(fit, validation_fraction, seed + 1)
    return {"train": fit, "validation": validation, "test": final_test}
