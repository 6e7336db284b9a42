"""Checks on a query given by a user (a value for each of the task's input fields), before
any model sees it."""

from __future__ import annotations

from collections.abc import Mapping

from people_relation.dataset import Example
from people_relation.errors import RefusedInput
from people_relation.task import Task


class QueryError(RefusedInput):
    """The query cannot be classified; the message says what to change."""


def make_query(task: Task, values: Mapping[str, object], max_chars: int) -> Example:
    """A validated query as an :class:`Example` (label unknown, so empty): every input field a
    non-empty string of at most ``max_chars`` characters (surrounding spaces dropped), a name
    inside the field it must occur in, no chat-template control token."""
    problems = [
        f"{f} must be a string" for f in task.fields if values.get(f) is not None and not isinstance(values[f], str)
    ]
    if problems:
        raise QueryError("; ".join(problems))
    inputs = {f: str(values.get(f) or "").strip() for f in task.fields}
    problems = [
        f"{f} has {len(v)} characters; at most {max_chars} are allowed (query.max_chars)"
        for f, v in inputs.items()
        if len(v) > max_chars
    ]
    problems += task.input_problems(inputs)
    if problems:
        raise QueryError("; ".join(problems))
    return Example(id="query", split="query", line=0, inputs=inputs, label="")
