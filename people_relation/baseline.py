"""The classical baseline: character n-gram TF-IDF and a linear SVM, names masked.

Masking the two people (``P1``/``P2`` placeholders, one character each) makes the model
learn the words around them, as the neural models must, instead of memorising names.
"""

from __future__ import annotations

from collections.abc import Sequence

from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.pipeline import Pipeline
from sklearn.svm import LinearSVC

from people_relation.dataset import Example

PERSON1, PERSON2 = "\u2460", "\u2461"  # ① ②: characters that never occur in the data


def masked_text(example: Example) -> str:
    """The text with people1 and people2 replaced (longer name first, so a name inside
    the other is not cut in two)."""
    pairs = sorted(((example.people1, PERSON1), (example.people2, PERSON2)), key=lambda p: -len(p[0]))
    text = example.text
    for name, mark in pairs:
        text = text.replace(name, mark)
    return text


def features_text(example: Example, mask_names: bool) -> str:
    return masked_text(example) if mask_names else f"{example.text}|{example.people1}|{example.people2}"


def build_pipeline(ngram_min: int, ngram_max: int, c: float, seed: int) -> Pipeline:
    return Pipeline(
        [
            ("tfidf", TfidfVectorizer(analyzer="char", ngram_range=(ngram_min, ngram_max), sublinear_tf=True)),
            ("svm", LinearSVC(C=c, random_state=seed)),
        ]
    )


def fit_predict(
    train: Sequence[Example],
    evaluate: Sequence[Sequence[Example]],
    ngram_min: int,
    ngram_max: int,
    c: float,
    mask_names: bool,
    seed: int,
) -> list[list[str]]:
    """Fit on ``train``; the predicted labels of each sequence in ``evaluate``."""
    model = build_pipeline(ngram_min, ngram_max, c, seed)
    model.fit([features_text(e, mask_names) for e in train], [e.label for e in train])
    return [list(model.predict([features_text(e, mask_names) for e in rows])) for rows in evaluate]
