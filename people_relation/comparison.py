"""The F1 comparison: every arm this project ran (each a training profile: its models on
the test split), a classical baseline measured here, and the published results on the
same test set (the task file's ``published``, quoted, not re-run); and the error analysis
of those models, as the published write-up did for its own."""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from people_relation.metrics import normalise_prediction, per_label_f1, scores
from people_relation.predictions import scored_answer
from people_relation.task import Task

Interval = tuple[float, float]


@dataclass(frozen=True)
class Row:
    method: str
    model: str
    weighted_f1: float
    source: str  # "this project", "measured here" or "published"
    validation_f1: float | None = None  # greedy, on the validation split (this project's models)
    test_ci: Interval | None = None  # 95% bootstrap interval of weighted_f1 (rows resampled)
    validation_ci: Interval | None = None  # the same for validation_f1


def published_rows(task: Task) -> list[Row]:
    """The task's published results on the same test set (its task file's ``published``)."""
    return [Row(r.method, r.model, r.weighted_f1, "published") for r in task.published]


def method_name(phase: str, warmup_labels: str | None, prior: str = "prior") -> str:
    """What a model of an arm is, in the table's words: ``phase`` is base, warmup or grpo;
    ``warmup_labels`` the arm's warm-up targets (gold, random, prior, or None without a
    warm-up); ``prior`` what the task's prior is called (``keyword rules``)."""
    if phase == "base":
        return "no training"
    if phase == "warmup":
        return {
            "gold": "supervised warm-up",
            "random": "format warm-up (random labels)",
            "prior": f"warm-up on the {prior}' answers (no gold label)",
        }.get(warmup_labels or "", "warm-up")
    if warmup_labels == "gold":
        return "supervised warm-up + GRPO"
    if warmup_labels == "random":
        return "pure RL: GRPO after a random-label warm-up"
    if warmup_labels == "prior":
        return f"GRPO after the {prior.replace(' ', '-')} warm-up (gold labels only in the rewards)"
    return "pure RL: GRPO"


@dataclass(frozen=True)
class ArmModel:
    """One evaluated model of one arm."""

    arm: str  # the profile
    phase: str
    method: str
    model: str
    test: Mapping[str, float]
    validation_f1: float | None
    test_ci: Interval | None = None
    validation_ci: Interval | None = None

    @property
    def name(self) -> str:
        return f"{self.arm}/{self.phase}"


def comparison_rows(
    models: Sequence[ArmModel],
    baselines: Sequence[Row] = (),
    published: Sequence[Row] = (),
) -> list[Row]:
    """All rows, best test weighted F1 first: this project's models, the ``baselines``
    measured here, and the published results."""
    rows = [
        Row(
            f"{m.method} ({m.arm})",
            m.model,
            float(m.test["weighted_f1"]),
            "this project",
            m.validation_f1,
            m.test_ci,
            m.validation_ci,
        )
        for m in models
    ]
    rows.extend(baselines)
    rows.extend(published)
    return sorted(rows, key=lambda r: r.weighted_f1, reverse=True)


def _percent(value: float | None, interval: Interval | None = None) -> str:
    if value is None:
        return ""
    if interval is None:
        return f"{value * 100:.2f}%"
    return f"{value * 100:.2f}% [{interval[0] * 100:.1f}, {interval[1] * 100:.1f}]"


def markdown_table(rows: Sequence[Row], level: float = 0.95) -> str:
    """The table; a measured score carries its bootstrap interval in brackets."""
    lines = [
        f"| method | model | test weighted F1 [{level:.0%} interval] | validation weighted F1 [{level:.0%} interval] "
        "| source |",
        "|---|---|---|---|---|",
    ]
    lines += [
        f"| {r.method} | {r.model} | {_percent(r.weighted_f1, r.test_ci)} "
        f"| {_percent(r.validation_f1, r.validation_ci)} | {r.source} |"
        for r in rows
    ]
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class Difference:
    """A paired difference of weighted F1 between two models of an arm (or a model and the
    keyword rules), on each split: (difference, low, high), None where not measured."""

    arm: str
    comparison: str
    validation: tuple[float, float, float] | None
    test: tuple[float, float, float] | None


def differences_table(rows: Sequence[Difference], level: float = 0.95) -> str:
    """Markdown: each difference with its paired bootstrap interval."""

    def cell(d: tuple[float, float, float] | None) -> str:
        return "" if d is None else f"{d[0]:+.3f} [{d[1]:+.3f}, {d[2]:+.3f}]"

    lines = [
        f"| arm | difference | validation [{level:.0%} interval] | test [{level:.0%} interval] |",
        "|---|---|---|---|",
    ]
    lines += [f"| {r.arm} | {r.comparison} | {cell(r.validation)} | {cell(r.test)} |" for r in rows]
    return "\n".join(lines) + "\n"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def error_report(
    task: Task,
    gold: Mapping[str, Mapping[str, str]],
    answers: Mapping[str, Mapping[str, Mapping[str, object]]],
    baseline: Mapping[str, str] | None,
    samples: int,
    seed: int,
) -> str:
    """Markdown: per-label F1 of every model (and the baseline), ``samples`` correct and
    wrong answers of each model with its reasoning, and the rows where every model that
    beats the majority answer (and the baseline) gives the same wrong label (candidates
    for label noise; a model answering one label for every row would agree with nothing).

    ``gold`` maps a row id to its row (the task's input fields and label); ``answers`` a model
    name to its prediction records by row id (``answer``, ``valid``, ``think``);
    ``baseline`` a row id to the baseline's label. A row shows its first input field (the
    text) and the others, comma-separated.
    """
    ids = list(gold)
    labels = [gold[i]["label"] for i in ids]
    known = task.labels
    predicted = {name: [normalise_prediction(known, scored_answer(r[i])) for i in ids] for name, r in answers.items()}
    if baseline is not None:
        predicted["baseline"] = [baseline[i] for i in ids]
    names = list(predicted)
    f1 = {name: per_label_f1(known, labels, predicted[name]) for name in names}
    support = {label: labels.count(label) for label in known}
    text, *others = task.fields
    other = ", ".join(others)

    def shown(row: Mapping[str, str]) -> str:
        return f"{_cell(row[text])} | {', '.join(_cell(row[f]) for f in others)}"

    out = [f"# Error analysis on {len(ids)} test rows", "", "## F1 per label", ""]
    out += ["| label | rows | " + " | ".join(names) + " |", "|---|---|" + "---|" * len(names)]
    out += [
        f"| {label} | {support[label]} | " + " | ".join(f"{f1[n][label]:.3f}" for n in names) + " |" for label in known
    ]
    rng = random.Random(seed)
    for name, records in answers.items():
        right = [i for i, p in zip(ids, predicted[name], strict=True) if p == gold[i]["label"]]
        wrong = [i for i, p in zip(ids, predicted[name], strict=True) if p != gold[i]["label"]]
        out += ["", f"## {name}: {len(right)} right, {len(wrong)} wrong", ""]
        out += [f"| | {text} | {other} | gold | answer | reasoning |", "|---|---|---|---|---|---|"]
        for verdict, pool in (("right", right), ("wrong", wrong)):
            for i in sorted(rng.sample(pool, min(samples, len(pool)))):
                row, record = gold[i], records[i]
                out.append(
                    f"| {verdict} | {shown(row)} | {row['label']} "
                    f"| {_cell(str(record.get('answer') or '(invalid)'))} | {_cell(str(record.get('think') or ''))} |"
                )
    majority = max(set(labels), key=labels.count)
    floor = scores(known, labels, [majority] * len(labels))["weighted_f1"]
    judges = [n for n in names if scores(known, labels, predicted[n])["weighted_f1"] > floor]
    agreed = [
        i
        for k, i in enumerate(ids)
        if judges and len({predicted[n][k] for n in judges}) == 1 and predicted[judges[0]][k] != gold[i]["label"]
    ]
    out += [
        "",
        f"## The models agree against the gold label: {len(agreed)} rows",
        "",
        f"Every model that beats always answering {majority} (weighted F1 {floor:.3f}) — "
        f"{', '.join(judges) or 'none'} — answers the same label, and it is not the gold one: "
        "candidates for label noise.",
        "",
    ]
    if agreed:
        out += [f"| row | {text} | {other} | gold | all answer |", "|---|---|---|---|---|"]
        out += [
            f"| {i} | {shown(gold[i])} | {gold[i]['label']} | {predicted[judges[0]][ids.index(i)]} |" for i in agreed
        ]
    return "\n".join(out) + "\n"
