"""Task of the baseline stage: the classical baseline fitted and scored on the same split."""

from __future__ import annotations

from prefect import task

from people_relation.baseline import fit_predict
from people_relation.infra.data import read_examples
from people_relation.metrics import report_text, scores
from people_relation.paths import split_file
from people_relation.settings import Baseline, Split


@task(name="fit-baseline")
def fit_and_score(split: Split, baseline: Baseline) -> tuple[dict, str, list[dict]]:
    train, validation, test = (read_examples(split_file(split, n)) for n in ("train", "validation", "test"))
    val_pred, test_pred = fit_predict(
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
        "validation": scores([e.label for e in validation], val_pred),
        "test": scores([e.label for e in test], test_pred),
    }
    predictions = [{"id": e.id, "label": e.label, "predicted": p} for e, p in zip(test, test_pred, strict=True)]
    return metrics, report_text([e.label for e in test], test_pred), predictions
