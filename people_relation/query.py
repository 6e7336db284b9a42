"""Checks on a sentence and two names given by a user, before any model sees them."""

from __future__ import annotations

from people_relation.dataset import Example
from people_relation.errors import RefusedInput
from people_relation.prompt import control_token_problem


class QueryError(RefusedInput):
    """The sentence or the names cannot be classified; the message says what to change."""


def make_query(text: str, people1: str, people2: str, max_chars: int) -> Example:
    """A validated query as an :class:`Example` (label unknown, so empty)."""
    text, people1, people2 = text.strip(), people1.strip(), people2.strip()
    problems = []
    if not text:
        problems.append("the sentence is empty")
    elif len(text) > max_chars:
        problems.append(f"the sentence has {len(text)} characters; at most {max_chars} are allowed (query.max_chars)")
    for field, name in (("people1", people1), ("people2", people2)):
        if not name:
            problems.append(f"{field} is empty")
        elif text and name not in text:
            problems.append(f"{field} {name!r} does not occur in the sentence")
    for field, value in (("the sentence", text), ("people1", people1), ("people2", people2)):
        if problem := control_token_problem(field, value):
            problems.append(problem)
    if problems:
        raise QueryError("; ".join(problems))
    return Example(id="query", split="query", line=0, text=text, people1=people1, people2=people2, label="")
