"""Rule-based priors by name: what a task's warm-up may teach in place of the gold labels
(``warmup.labels: prior``), and what the baseline scores beside the classifier.

A prior reads one row's inputs and answers a label, or None when it finds no cue (the
task's ``none_label`` then). ``keywords`` is the relation task's: kinship and social words
read between the two people (:mod:`people_relation.keywords`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from people_relation import keywords

if TYPE_CHECKING:
    from people_relation.task import Task


@dataclass(frozen=True)
class Prior:
    name: str
    """What the reports call it."""
    explain: Callable[[Mapping[str, str]], Any]
    """The cue the rules read in a row (with a ``label``), or None."""
    fields: tuple[str, ...]
    """The input fields it reads."""
    labels: frozenset[str]
    """Every label it can answer."""

    def answer(self, inputs: Mapping[str, str]) -> str | None:
        cue = self.explain(inputs)
        return None if cue is None else cue.label

    def problem(self, task: Task) -> str | None:
        """Why this prior cannot serve ``task``, or None."""
        missing = [f for f in self.fields if f not in task.inputs]
        if missing:
            return f"it reads the input field(s) {', '.join(missing)}, which the task lacks"
        unknown = sorted(self.labels - task.label_set)
        if unknown:
            return f"it answers {', '.join(unknown)}, which are not labels of the task"
        if task.none_label is None:
            return "it needs a none_label to answer when it finds no cue"
        return None


def _keywords(inputs: Mapping[str, str]) -> Any:
    return keywords.explain_pair(inputs["text"], inputs["people1"], inputs["people2"])


PRIORS: dict[str, Prior] = {
    "keywords": Prior(
        "keyword rules",
        _keywords,
        ("text", "people1", "people2"),
        frozenset(keywords.CUES) | set(keywords.SHARED_HEAD.values()),
    ),
}
