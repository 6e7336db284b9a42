"""Rule-based rewards by name, callable by TRL's ``GRPOTrainer``.

A task lists its rewards by name with a weight each (``rewards`` in its task file); this
module's :data:`REWARDS` registry builds each one for the task. TRL calls a reward function
as ``fn(prompts=..., completions=..., completion_ids=..., **dataset_columns)``, expects one
float per completion, and logs it as ``rewards/<fn.__name__>/mean``: a reward named ``x``
is the function ``x_reward``, so its log key, curve and column are ``rewards/x_reward/mean``.

Adding a reward is one function here and one line in the task file (``rewards``):

    def _length(task, train_labels):
        def length_reward(completions, **kwargs):
            return [...]
        return length_reward

    REWARDS["length"] = Reward(_length, "what it pays for")

Completions are plain strings for string prompts, or lists of chat messages for
conversational prompts; both work here.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from people_relation.task import Task

RewardFn = Callable[..., list[float]]

FORMAT_AND_LABEL = 1.0
FORMAT_ONLY = 0.5
NO_FORMAT = 0.0
CORRECT = 1.0
WRONG = 0.0


@dataclass(frozen=True)
class Reward:
    """A named reward: ``build(task, train_labels)`` returns TRL's function for that task."""

    build: Callable[[Task, Sequence[str]], RewardFn]
    description: str


def log_key(name: str, prefix: str = "") -> str:
    """TRL's log key of the mean of reward ``name``: ``rewards/<name>_reward/mean``."""
    return f"{prefix}rewards/{function_name(name)}/mean"


def function_name(name: str) -> str:
    return f"{name}_reward"


def recorded_reward(task: Task) -> str:
    """The reward the training logs follow per gold label and the report charts: ``label`` when
    the task has it, else its first."""
    return "label" if "label" in task.rewards else next(iter(task.rewards))


def reward_order(task: Task) -> list[str]:
    """The task's reward names, the recorded one first (how summaries and charts list them)."""
    first = recorded_reward(task)
    return [first, *(n for n in task.rewards if n != first)]


def completion_text(completion: Any) -> str:
    """The generated text of a completion in either of TRL's shapes."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, Sequence) and completion and isinstance(completion[-1], dict):
        return str(completion[-1].get("content", ""))
    raise TypeError(f"a completion must be a string or a list of chat messages, got {type(completion).__name__}")


def _format(task: Task, train_labels: Sequence[str]) -> RewardFn:
    def format_reward(completions: Sequence[Any], **kwargs: Any) -> list[float]:
        """1.0 when the format holds and the answer is a label, 0.5 when only the format holds, else 0."""
        rewards = []
        for completion in completions:
            parsed = task.parse(completion_text(completion))
            if not parsed.format_ok:
                rewards.append(NO_FORMAT)
            elif parsed.label is not None:
                rewards.append(FORMAT_AND_LABEL)
            else:
                rewards.append(FORMAT_ONLY)
        return rewards

    return format_reward


def correct(task: Task, completions: Sequence[Any], label: Sequence[str]) -> list[float]:
    """1.0 where the parsed answer equals the gold label, else 0.

    Only a well-formed completion can earn it: an answer smuggled into broken output
    (say, two answer blocks) must not be rewarded.
    """
    if len(label) != len(completions):
        raise ValueError(f"the label reward got {len(completions)} completions but {len(label)} labels")
    return [
        CORRECT if task.parse(completion_text(c)).label == gold else WRONG
        for c, gold in zip(completions, label, strict=True)
    ]


def _label(task: Task, train_labels: Sequence[str]) -> RewardFn:
    def label_reward(completions: Sequence[Any], label: Sequence[str], **kwargs: Any) -> list[float]:
        """1.0 when the well-formed answer equals the gold label, else 0."""
        return correct(task, completions, label)

    return label_reward


def label_weights(labels: Sequence[str]) -> dict[str, float]:
    """A weight per gold label, inversely proportional to its share of ``labels`` and 1 on
    average over them: ``n / (k * count)`` for ``k`` distinct labels among ``n``."""
    if not labels:
        raise ValueError("label_weights needs at least one label")
    counts = Counter(labels)
    return {lab: len(labels) / (len(counts) * c) for lab, c in counts.items()}


def balance_bonus(task: Task, weights: Mapping[str, float]) -> RewardFn:
    """``weight(gold) - 1`` for a correct answer, else 0."""

    def balance_reward(completions: Sequence[Any], label: Sequence[str], **kwargs: Any) -> list[float]:
        hits = correct(task, completions, label)
        missing = sorted({gold for gold in label} - weights.keys())
        if missing:
            raise ValueError(f"the balance reward has no weight for the gold label(s) {missing}")
        return [(weights[gold] - 1.0) * c for gold, c in zip(label, hits, strict=True)]

    return balance_reward


def _balance(task: Task, train_labels: Sequence[str]) -> RewardFn:
    return balance_bonus(task, label_weights(train_labels))


REWARDS: dict[str, Reward] = {
    "format": Reward(
        _format, "1 when the format holds and the answer is a label, 0.5 when only the format holds, else 0"
    ),
    "label": Reward(_label, "1 when the well-formed answer is the gold label, else 0"),
    # A deviation from the published two: with the label reward at the same weight it pays
    # weight(gold) for a right answer, so rare labels count as much as common ones. Group-scaled
    # advantages divide each prompt's rewards by their spread and cancel a per-prompt weight:
    # use it with grpo.scale_rewards batch or none.
    "balance": Reward(_balance, "weight(gold) - 1 for a right answer (rare labels pay more), else 0"),
}
