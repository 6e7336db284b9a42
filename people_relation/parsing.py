"""Parse a completion into its reasoning, its answer and whether the format held.

The format is the published one: ``<think>`` + completion must read
``<think>REASONING</think>\\n<answer>ANSWER</answer>`` and nothing else. Stricter than a
bare regular expression in the ways an RL policy would exploit:

* neither part may contain any of the four tags (no second answer, no nesting);
* nothing but whitespace may follow ``</answer>`` (a trailing newline or end-of-text
  padding is tolerated, more text is not);
* the answer is compared after stripping surrounding whitespace, and only by exact
  equality with a label, so ``父母亲`` is not ``父母``.
"""

from __future__ import annotations

import re
from collections.abc import Container
from dataclasses import dataclass

from people_relation.prompt import ANSWER_CLOSE, ANSWER_OPEN, TAGS, THINK_CLOSE, THINK_OPEN

_FORMAT = re.compile(
    re.escape(THINK_OPEN)
    + r"(?P<think>.*?)"
    + re.escape(THINK_CLOSE)
    + r"\n"
    + re.escape(ANSWER_OPEN)
    + r"(?P<answer>.*?)"
    + re.escape(ANSWER_CLOSE)
    + r"\s*",
    re.DOTALL,
)
_ANSWER = re.compile(re.escape(ANSWER_OPEN) + r"(.*?)" + re.escape(ANSWER_CLOSE), re.DOTALL)


@dataclass(frozen=True)
class ParsedCompletion:
    think: str | None
    answer: str | None
    format_ok: bool
    label: str | None = None
    """The label the model answered: the answer when the format held and it is one of the
    task's labels, else None. The one rule every scorer, reward and display uses."""


def _has_tag(part: str) -> bool:
    return any(tag in part for tag in TAGS)


def parse_completion(completion: str, labels: Container[str], prefix: str = THINK_OPEN) -> ParsedCompletion:
    """Parse ``prefix + completion``; ``prefix`` is what the prompt prefilled, ``labels`` the
    answers that count.

    When the format does not hold, the answer is still extracted if exactly one
    ``<answer>…</answer>`` pair is present, so evaluation can report what the model meant;
    ``format_ok`` tells the rewards whether it counts.
    """
    full = prefix + completion
    match = _FORMAT.fullmatch(full)
    if match and not _has_tag(match["think"]) and not _has_tag(match["answer"]):
        answer = match["answer"].strip()
        return ParsedCompletion(
            think=match["think"].strip(), answer=answer, format_ok=True, label=answer if answer in labels else None
        )
    answers = _ANSWER.findall(full)
    answer = answers[0].strip() if len(answers) == 1 and not _has_tag(answers[0]) else None
    return ParsedCompletion(think=None, answer=answer, format_ok=False)
