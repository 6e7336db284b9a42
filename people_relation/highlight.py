"""Where the two people of a query occur in its sentence, to show them highlighted.

Pure functions, so the demo page (``apps/demo.py``) only renders and the rules (overlaps,
one name inside the other, HTML escaping) are tested without a browser.
"""

from __future__ import annotations

import html
from dataclasses import dataclass

PEOPLE = (1, 2)


@dataclass(frozen=True)
class Span:
    """``text[start:end]`` is a mention of person 1 or person 2."""

    start: int
    end: int
    person: int


def name_spans(text: str, people1: str, people2: str) -> list[Span]:
    """Every mention of ``people1`` and ``people2`` in ``text``, left to right, never overlapping.

    Where both names match at one place (one holds the other, 张三 and 张三丰) the longer
    one wins, so a name is never marked half; when both names are the same, the mentions are
    person 1's. An empty name matches nothing.
    """
    given = [(name, person) for person, name in zip(PEOPLE, (people1, people2), strict=True) if name]
    names = sorted(given, key=lambda pair: -len(pair[0]))  # stable: person 1 first on equal length
    spans: list[Span] = []
    pos = 0
    while pos < len(text):
        match = next(((name, person) for name, person in names if text.startswith(name, pos)), None)
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
