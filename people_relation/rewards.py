"""Rule-based rewards with the published semantics, callable by TRL's ``GRPOTrainer``.

TRL calls each reward function as ``fn(prompts=..., completions=..., completion_ids=...,
**dataset_columns)`` and expects one float per completion. Completions are plain strings
for string prompts, or lists of chat messages for conversational prompts; both work here.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from people_relation.parsing import parse_completion

FORMAT_AND_LABEL = 1.0
FORMAT_ONLY = 0.5
NO_FORMAT = 0.0
CORRECT = 1.0
WRONG = 0.0


def completion_text(completion: Any) -> str:
    """The generated text of a completion in either of TRL's shapes."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, Sequence) and completion and isinstance(completion[-1], dict):
        return str(completion[-1].get("content", ""))
    raise TypeError(f"a completion must be a string or a list of chat messages, got {type(completion).__name__}")


def format_reward(completions: Sequence[Any], **kwargs: Any) -> list[float]:
    """1.0 when the format holds and the answer is a label, 0.5 when only the format holds, else 0."""
    rewards = []
    for completion in completions:
        parsed = parse_completion(completion_text(completion))
        if not parsed.format_ok:
            rewards.append(NO_FORMAT)
        elif parsed.label is not None:
            rewards.append(FORMAT_AND_LABEL)
        else:
            rewards.append(FORMAT_ONLY)
    return rewards


def label_reward(completions: Sequence[Any], label: Sequence[str], **kwargs: Any) -> list[float]:
    """1.0 when the parsed answer equals the gold label, else 0.

    Only a well-formed completion can earn it: an answer smuggled into broken output
    (say, two answer blocks) must not be rewarded.
    """
    if len(label) != len(completions):
        raise ValueError(f"label_reward got {len(completions)} completions but {len(label)} labels")
    rewards = []
    for completion, gold in zip(completions, label, strict=True):
        parsed = parse_completion(completion_text(completion))
        rewards.append(CORRECT if parsed.label == gold else WRONG)
    return rewards


def label_weights(labels: Sequence[str]) -> dict[str, float]:
    """A weight per gold label, inversely proportional to its share of ``labels`` and 1 on
    average over them: ``n / (k * count)`` for ``k`` distinct labels among ``n``."""
    if not labels:
        raise ValueError("label_weights needs at least one label")
    counts = Counter(labels)
    return {lab: len(labels) / (len(counts) * c) for lab, c in counts.items()}


def balance_bonus(weights: Mapping[str, float]) -> Callable[..., list[float]]:
    """A third reward, a deviation from the published two: ``weight(gold) - 1`` for a correct
    answer, else 0. Added to the label reward it pays ``weight(gold)`` for a right answer, so
    the rare relations count as much as the common ones in the policy's gradient.

    Group-scaled advantages divide each prompt's rewards by their spread and so cancel a
    per-prompt weight: use it with ``scale_rewards`` ``batch`` or ``none``.
    """

    def balance_bonus(completions: Sequence[Any], label: Sequence[str], **kwargs: Any) -> list[float]:
        correct = label_reward(completions, label)
        missing = sorted({gold for gold in label} - weights.keys())
        if missing:
            raise ValueError(f"balance_bonus has no weight for the gold label(s) {missing}")
        return [(weights[gold] - 1.0) * c for gold, c in zip(label, correct, strict=True)]

    return balance_bonus
