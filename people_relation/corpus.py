"""Unlabelled Chinese text for pretraining the CPU policy: read, cleaned, kept apart from the
evaluation rows.

A source is a text file shipped inside a pinned registry package, in one of two formats:

* ``pos_tagged``: the People's Daily corpus (January 1998) as word/POS pairs separated by
  spaces (``中共中央/nt  总书记/n``), bracketed compounds written ``[中央/n  电台/n]nt``;
  the tags and brackets are stripped and the words joined.
* ``plain``: one text per line (the product reviews).

Each line is normalised as the relation data is written: full-width ASCII letters, digits and
signs become half-width (the data writes ``1998年``, the corpus ``１９９８年``); Chinese
punctuation (，。：《》) stays; runs of white space become one space. Lines are then dropped
for one reason each, counted by reason: too short, holding a chat-template control token, a
duplicate, or overlapping an evaluation row (validation or test) by ``overlap_chars``
characters or containing one whole. What is left is split into training and held-out lines by
a hash of each line, so the held-out set does not depend on the order of the sources.

Pure: no file is read here (the corpus stage reads and writes).
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field

from people_relation.prompt import control_tokens

# word/TAG, with an optional closing bracket and compound tag: 电台/n]nt
_TAGGED_WORD = re.compile(r"^\[?(.+?)/[A-Za-z]+(?:\][A-Za-z]+)?$")
_SPACES = re.compile(r"\s+")
# full-width ! to ~ (U+FF01-FF5E) are ASCII ! to ~ shifted by 0xFEE0, and the ideographic space
# is a space. The relation data writes its digits and letters half-width but these signs
# mostly full-width, as Chinese punctuation, so they stay.
_KEEP_FULL_WIDTH = frozenset("，：；！？（）")
_HALF_WIDTH = {cp: cp - 0xFEE0 for cp in range(0xFF01, 0xFF5F) if chr(cp) not in _KEEP_FULL_WIDTH}
_HALF_WIDTH[0x3000] = 0x20

DROP_REASONS = ("short", "control_token", "duplicate", "evaluation_overlap")


class CorpusFormatError(ValueError):
    """A source line that its format cannot read."""


def strip_tags(line: str) -> str:
    """The words of one ``pos_tagged`` line, joined: ``江/nr  泽民/nr`` -> ``江泽民``.

    A token that is not ``word/TAG`` (a malformed line) raises :class:`CorpusFormatError`.
    """
    words = []
    for token in line.split():
        match = _TAGGED_WORD.match(token)
        if match is None:
            raise CorpusFormatError(f"token {token!r} is not word/TAG")
        words.append(match.group(1))
    return "".join(words)


def normalise(text: str) -> str:
    """Full-width ASCII to half-width (the relation data's digits and letters), Chinese
    punctuation kept, white space collapsed, ends stripped."""
    return _SPACES.sub(" ", text.translate(_HALF_WIDTH)).strip()


def source_lines(raw: str, fmt: str) -> Iterator[tuple[int, str]]:
    """``(line number, normalised text)`` of a source file's non-empty lines."""
    for number, line in enumerate(raw.splitlines(), start=1):
        if not line.strip():
            continue
        if fmt == "pos_tagged":
            try:
                line = strip_tags(line)
            except CorpusFormatError as err:
                raise CorpusFormatError(f"line {number}: {err}") from None
        yield number, normalise(line)


class OverlapIndex:
    """Finds lines that hold an evaluation sentence or share ``span`` characters with one.

    Every ``span``-character window of every evaluation sentence is indexed; a line is caught
    when any of its own windows is indexed. A sentence shorter than ``span`` is caught when a
    line contains it whole.
    """

    def __init__(self, sentences: Iterable[str], span: int) -> None:
        self.span = span
        self.windows: set[str] = set()
        self.short: set[str] = set()
        for sentence in sentences:
            sentence = normalise(sentence)
            if len(sentence) < span:
                self.short.add(sentence)
            else:
                self.windows.update(sentence[i : i + span] for i in range(len(sentence) - span + 1))

    def overlaps(self, line: str) -> bool:
        span = self.span
        if any(line[i : i + span] in self.windows for i in range(len(line) - span + 1)):
            return True
        return any(s in line for s in self.short)


@dataclass
class SourceStats:
    """What one source gave and lost."""

    lines: int = 0
    kept_lines: int = 0
    kept_chars: int = 0
    dropped: Counter = field(default_factory=Counter)


@dataclass
class CleanCorpus:
    train: list[str]
    heldout: list[str]
    stats: dict[str, SourceStats]


def held_out(line: str, fraction: float, seed: int) -> bool:
    """Whether ``line`` is held out: a hash of the line and the seed, below ``fraction``."""
    digest = hashlib.sha256(f"{seed}\0{line}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < fraction


def clean(
    sources: Sequence[tuple[str, Iterable[str]]],
    evaluation: OverlapIndex,
    min_chars: int,
    heldout_fraction: float,
    seed: int,
) -> CleanCorpus:
    """Filter the normalised lines of each named source (in order) and split them."""
    seen: set[str] = set()
    train: list[str] = []
    heldout: list[str] = []
    stats: dict[str, SourceStats] = {}
    for name, lines in sources:
        s = stats.setdefault(name, SourceStats())
        for line in lines:
            s.lines += 1
            reason = _drop_reason(line, seen, evaluation, min_chars)
            if reason:
                s.dropped[reason] += 1
                continue
            seen.add(line)
            s.kept_lines += 1
            s.kept_chars += len(line)
            (heldout if held_out(line, heldout_fraction, seed) else train).append(line)
    return CleanCorpus(train, heldout, stats)


def _drop_reason(line: str, seen: set[str], evaluation: OverlapIndex, min_chars: int) -> str | None:
    if len(line) < min_chars:
        return "short"
    if control_tokens(line):
        return "control_token"
    if line in seen:
        return "duplicate"
    if evaluation.overlaps(line):
        return "evaluation_overlap"
    return None


def coverage(corpus_chars: Counter, dataset_texts: Iterable[str]) -> dict[str, float | int]:
    """How many of the dataset's distinct characters the corpus holds, and the share of its
    character occurrences they make."""
    data = Counter(ch for text in dataset_texts for ch in text)
    covered = [ch for ch in data if corpus_chars[ch] > 0]
    total = sum(data.values())
    return {
        "dataset_distinct_chars": len(data),
        "covered_distinct_chars": len(covered),
        "covered_share_of_occurrences": round(sum(data[ch] for ch in covered) / total, 4) if total else 0.0,
    }
