"""Tasks of the baseline stage: the classical baseline fitted and scored on the same split, and
the task's rule-based prior (no training) scored on it."""

from __future__ import annotations

from prefect import task

from people_relation.baseline import fit_predict
from people_relation.infra.data import read_examples
from people_relation.infra.paths import split_file
from people_relation.metrics import report_text, scores
from people_relation.settings import Baseline, Split
from people_relation.task import Task


@task(name="fit-baseline")
def fit_and_score(task: Task, split: Split, baseline: Baseline) -> tuple[dict, str, list[dict]]:
    train, validation, test = (read_examples(split_file(split, n)) for n in ("train", "validation", "test"))
    val_pred, test_pred = fit_predict(
        list(task.mentions),
        train,
        [validation, test],
        ngram_min=baseline.ngram_min,
        ngram_max=baseline.ngram_max,
        c=baseline.C,
        mask_names=baseline.mask_names,
        seed=split.seed,
    )
    metrics = {
        "method": "char n-gram TF-IDF + linear SVM",
        "validation": scores(task.labels, [e.label for e in validation], val_pred),
        "test": scores(task.labels, [e.label for e in test], test_pred),
    }
    predictions = {
        name: [{"id": e.id, "label": e.label, "predicted": p} for e, p in zip(rows, pred, strict=True)]
        for name, rows, pred in (("validation", validation, val_pred), ("test", test, test_pred))
    }
    return metrics, report_text(task.labels, [e.label for e in test], test_pred), predictions


@task(name="prior-rules")
def prior_rules(task: Task, split: Split) -> tuple[dict, dict[str, list[dict]]]:
    """The task's rule-based prior (no training) on the validation and test splits: scores, and
    each answer with the word that decided it and where that word stood. A task without a
    prior gets ``{"method": null}`` and no answers."""
    if task.prior is None:
        return {"method": None}, {"validation": [], "test": []}
    metrics: dict = {"method": f"{task.prior_title}, no training"}
    predictions = {}
    for name in ("validation", "test"):
        rows = read_examples(split_file(split, name))
        cues = [task.prior_explanation(e.inputs) for e in rows]
        answers = [task.none_label if c is None else c.label for c in cues]
        metrics[name] = scores(task.labels, [e.label for e in rows], answers)
        predictions[name] = [
            {
                "split": name,
                "id": e.id,
                "label": e.label,
                "predicted": a,
                "word": c.word if c else "",
                "place": c.place if c else "",
            }
            for e, a, c in zip(rows, answers, cues, strict=True)
        ]
    return metrics, predictions
