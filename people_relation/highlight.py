"""Where the names of a query (its task's mention fields) occur in its sentence, to show them highlighted.

Pure functions, so the demo page (``apps/demo.py``) only renders and the rules (overlaps,
one name inside the other, HTML escaping) are tested without a browser.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Span:
    """``text[start:end]`` is a mention of name ``person`` (1, 2, ...)."""

    start: int
    end: int
    person: int


def name_spans(text: str, names: Sequence[str]) -> list[Span]:
    """Every mention of each of ``names`` in ``text`` (name 1, 2, ...), left to right, never
    overlapping.

    Where two names match at one place (one holds the other, 张三 and 张三丰) the longer
    one wins, so a name is never marked half; when two names are the same, the mentions are
    the first's. An empty name matches nothing.
    """
    given = [(name, person) for person, name in enumerate(names, start=1) if name]
    ordered = sorted(given, key=lambda pair: -len(pair[0]))  # stable: name 1 first on equal length
    spans: list[Span] = []
    pos = 0
    while pos < len(text):
        match = next(((name, person) for name, person in ordered if text.startswith(name, pos)), None)
        if match is None:
            pos += 1
            continue
        name, person = match
        spans.append(Span(pos, pos + len(name), person))
        pos += len(name)
    return spans


def highlighted_html(text: str, spans: list[Span], css_class: str = "person") -> str:
    """``text`` as HTML (escaped: a sentence is user input), each span wrapped in
    ``<mark class="{css_class}{person}">``. ``spans`` must be sorted and not overlap, as
    :func:`name_spans` returns them."""
    parts: list[str] = []
    pos = 0
    for span in spans:
        if span.start < pos or span.end > len(text):
            raise ValueError(f"span {span} overlaps the one before it or runs past the text ({len(text)} characters)")
        parts.append(html.escape(text[pos : span.start]))
        parts.append(f'<mark class="{css_class}{span.person}">{html.escape(text[span.start : span.end])}</mark>')
        pos = span.end
    parts.append(html.escape(text[pos:]))
    return "".join(parts)
