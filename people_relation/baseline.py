"""The classical baseline: character n-gram TF-IDF and a linear SVM, names masked.

The features are the text (the first input field) with the task's mention fields masked
(``①``, ``②``... one character each): the model learns the words around the names, as the
neural models must, instead of memorising names. Unmasked, every input field is read.
"""

from __future__ import annotations

from collections.abc import Sequence

from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.pipeline import Pipeline
from sklearn.svm import LinearSVC

from people_relation.dataset import Example

MARKS = "\u2460\u2461\u2462\u2463\u2464\u2465\u2466\u2467\u2468\u2469"  # ① ② ...: never in the data


def masked_text(example: Example, mentions: Sequence[str]) -> str:
    """The text with each mention replaced by its mark (longer name first, so a name inside
    another is not cut in two)."""
    pairs = sorted(((example[f], MARKS[i]) for i, f in enumerate(mentions)), key=lambda p: -len(p[0]))
    text = example.key[0]
    for name, mark in pairs:
        text = text.replace(name, mark)
    return text


def features_text(example: Example, mask_names: bool, mentions: Sequence[str]) -> str:
    return masked_text(example, mentions) if mask_names else "|".join(example.key)


def build_pipeline(ngram_min: int, ngram_max: int, c: float, seed: int) -> Pipeline:
    return Pipeline(
        [
            ("tfidf", TfidfVectorizer(analyzer="char", ngram_range=(ngram_min, ngram_max), sublinear_tf=True)),
            ("svm", LinearSVC(C=c, random_state=seed)),
        ]
    )


def fit_predict(
    mentions: Sequence[str],
    train: Sequence[Example],
    evaluate: Sequence[Sequence[Example]],
    ngram_min: int,
    ngram_max: int,
    c: float,
    mask_names: bool,
    seed: int,
) -> list[list[str]]:
    """Fit on ``train``; the predicted labels of each sequence in ``evaluate`` (``mentions``:
    the task's mention fields, masked when ``mask_names``)."""
    model = build_pipeline(ngram_min, ngram_max, c, seed)
    model.fit([features_text(e, mask_names, mentions) for e in train], [e.label for e in train])
    return [list(model.predict([features_text(e, mask_names, mentions) for e in rows])) for rows in evaluate]
