"""Statistics of a task's data: what a person should know before training on it.

The first input field is the text (lengths, shared texts); the mention fields (``occurs_in``)
are the names (rows whose names are the same, or one inside the other)."""

from __future__ import annotations

import statistics
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence

from people_relation.dataset import Example
from people_relation.task import Task


def label_counts(examples: Sequence[Example], labels: Sequence[str]) -> dict[str, int]:
    """Rows per label, every label present (zero where absent), in the task's order."""
    counts = Counter(e.label for e in examples)
    return {label: counts.get(label, 0) for label in labels}


def length_stats(examples: Sequence[Example]) -> dict[str, float]:
    """Length of the text (the first input field) in characters: min, mean, median, 95th percentile, max."""
    lengths = sorted(len(e.key[0]) for e in examples)
    if not lengths:
        return {"min": 0, "mean": 0.0, "median": 0.0, "p95": 0, "max": 0}
    p95 = lengths[min(len(lengths) - 1, int(round(0.95 * (len(lengths) - 1))))]
    return {
        "min": lengths[0],
        "mean": round(statistics.fmean(lengths), 2),
        "median": float(statistics.median(lengths)),
        "p95": p95,
        "max": lengths[-1],
    }


def duplicate_stats(examples: Sequence[Example]) -> dict[str, object]:
    """Rows repeating another row's inputs, and inputs with conflicting labels."""
    by_key: dict[tuple[str, ...], list[Example]] = defaultdict(list)
    for e in examples:
        by_key[e.key].append(e)
    repeated = sum(len(v) - 1 for v in by_key.values() if len(v) > 1)
    conflicting = [
        {**v[0].inputs, "labels": sorted({e.label for e in v}), "ids": [e.id for e in v]}
        for v in by_key.values()
        if len({e.label for e in v}) > 1
    ]
    return {
        "repeated_rows": repeated,
        "keys_with_repeats": sum(1 for v in by_key.values() if len(v) > 1),
        "keys_with_conflicting_labels": len(conflicting),
        "conflicting": conflicting,
    }


def leakage_stats(first: Sequence[Example], second: Sequence[Example]) -> dict[str, int]:
    """What two splits share: whole inputs, and texts (the first input field)."""
    keys = {e.key for e in first} & {e.key for e in second}
    texts = {e.key[0] for e in first} & {e.key[0] for e in second}
    return {
        "shared_keys": len(keys),
        "shared_texts": len(texts),
        "second_rows_with_shared_key": sum(1 for e in second if e.key in keys),
    }


def nested_name_rows(examples: Sequence[Example], mentions: Sequence[str]) -> list[str]:
    """Ids of rows where one name is part of another (e.g. 伊丽莎白·泰勒 and 泰勒)."""
    return [e.id for e in examples if any(e[a] != e[b] and e[a] in e[b] for a in mentions for b in mentions if a != b)]


def data_report(splits: Mapping[str, Sequence[Example]], task: Task) -> dict[str, object]:
    """The data report of named splits (``train``/``test``, or any others)."""
    everything = [e for rows in splits.values() for e in rows]
    names = list(splits)
    report: dict[str, object] = {
        "rows": {name: len(rows) for name, rows in splits.items()} | {"total": len(everything)},
        "labels": list(task.labels),
        "label_counts": {name: label_counts(rows, task.labels) for name, rows in splits.items()}
        | {"total": label_counts(everything, task.labels)},
        "text_length_chars": {name: length_stats(rows) for name, rows in splits.items()}
        | {"total": length_stats(everything)},
        "duplicates": duplicate_stats(everything),
    }
    mentions = list(task.mentions)
    if len(mentions) >= 2:  # rows naming one person twice, or one name inside another
        report["same_person_pairs"] = sum(1 for e in everything if len({e[m] for m in mentions}) == 1)
        report["nested_name_rows"] = len(nested_name_rows(everything, mentions))
    if len(names) >= 2:
        report["leakage"] = {
            f"{a}_vs_{b}": leakage_stats(splits[a], splits[b]) for i, a in enumerate(names) for b in names[i + 1 :]
        }
    return report
