"""The collapse signals and the guard's rule (pure functions)."""

from __future__ import annotations

import math

import pytest

from people_relation.infra.plots import moving_average
from people_relation.monitor import (
    CollapseRule,
    answer_entropy,
    answer_shares,
    answer_summary,
    collapsed_label,
    over_limit,
    per_label_mean,
    reward_summary,
)


def test_shares_count_invalid_answers_in_the_total(task):
    shares = answer_shares(task.labels, ["不知道", "不知道", "夫妻", None, "朋友"])
    assert shares == {"不知道": 0.4, "夫妻": 0.2}  # 朋友 is not a label: invalid, counted in the total
    assert answer_shares(task.labels, []) == {}
    assert answer_shares(["夫妻"], ["不知道", "夫妻"]) == {"夫妻": 0.5}  # the labels given decide


def test_entropy_is_one_for_uniform_answers_and_zero_for_one_label(task):
    labels = task.labels
    assert answer_entropy(labels, list(labels) * 3) == pytest.approx(1.0)
    assert answer_entropy(labels, ["不知道"] * 9) == 0.0
    assert answer_entropy(labels, [None, None]) == 0.0
    two = answer_entropy(labels, ["夫妻", "父母"])
    assert two == pytest.approx(math.log(2) / math.log(len(labels)))
    # normalised by the number of labels of the task at hand
    assert answer_entropy(["夫妻", "父母"], ["夫妻", "父母"]) == pytest.approx(1.0)
    assert answer_entropy(["夫妻"], ["夫妻"]) == 0.0  # one label: no spread to measure


def test_summary_and_per_label_reward(task):
    summary = answer_summary(task.labels, ["不知道", "不知道", "不知道", "夫妻"])
    assert summary["top_share"] == 0.75 and summary["labels_answered"] == 2.0
    assert summary["entropy"] == pytest.approx(answer_entropy(task.labels, ["不知道"] * 3 + ["夫妻"]))
    assert per_label_mean(["夫妻", "夫妻", "父母"], [1.0, 0.0, 1.0]) == {"夫妻": 0.5, "父母": 1.0}


RULE = CollapseRule(ratio=3.0, min_share=0.5, patience=2)


def test_over_limit_needs_both_the_ratio_and_the_minimum_share():
    gold = {"不知道": 0.26, "同门": 0.02}
    assert over_limit({"不知道": 0.70}, gold, RULE) is None  # under 3 x 26% = 78%
    assert over_limit({"不知道": 0.80}, gold, RULE) == "不知道"
    assert over_limit({"同门": 0.40}, gold, RULE) is None  # 20 x its gold share, but under 50% of answers
    assert over_limit({"同门": 0.55, "不知道": 0.45}, gold, RULE) == "同门"
    assert over_limit({"祖孙": 0.6}, {}, RULE) == "祖孙"  # never a gold label: the floor applies


def test_collapse_needs_the_same_label_for_patience_evaluations_in_a_row():
    assert collapsed_label([None, "不知道"], RULE) is None
    assert collapsed_label(["不知道", "不知道"], RULE) == "不知道"
    assert collapsed_label(["不知道", "不知道", None], RULE) is None
    assert collapsed_label(["夫妻", "不知道"], RULE) is None
    assert collapsed_label(["不知道"], RULE) is None
    assert collapsed_label(["夫妻"], CollapseRule(3.0, 0.5, 1)) == "夫妻"


@pytest.mark.parametrize("bad", [dict(ratio=0), dict(min_share=0), dict(min_share=1.5), dict(patience=0)])
def test_rule_refuses_values_that_cannot_work(bad):
    with pytest.raises(ValueError, match="collapse guard"):
        CollapseRule(**({"ratio": 3.0, "min_share": 0.5, "patience": 2} | bad))


def test_moving_average_is_trailing_and_starts_short():
    assert moving_average([1.0, 3.0, 5.0, 7.0], 2) == [1.0, 2.0, 4.0, 6.0]
    assert moving_average([], 5) == []
    assert moving_average([2.0, 4.0], 10) == [2.0, 3.0]


def test_reward_summary_follows_the_total_and_each_named_reward():
    history = [
        {"reward": 0.5, "rewards/label_reward/mean": 0.0, "rewards/format_reward/mean": 0.5},
        {"reward": 1.0, "rewards/label_reward/mean": 0.25, "rewards/format_reward/mean": 0.75},
        {"reward": 1.5, "rewards/label_reward/mean": 0.5, "rewards/format_reward/mean": 1.0},
        {"reward": 2.0, "rewards/label_reward/mean": 1.0, "rewards/format_reward/mean": 1.0},
    ]
    summary = reward_summary(history, 2, ["label", "format", "balance"])
    assert (summary["first"], summary["last"]) == (0.5, 2.0)
    assert (summary["reward_first_2_mean"], summary["reward_last_2_mean"]) == (0.75, 1.75)
    assert (summary["label_first_2_mean"], summary["label_last_2_mean"]) == (0.125, 0.75)
    assert (summary["format_first_2_mean"], summary["format_last_2_mean"]) == (0.625, 1.0)
    assert summary["balance_first_2_mean"] is None  # named, never logged
    assert "format_first_2_mean" not in reward_summary(history, 2, ["label"])
    assert reward_summary([], 2, ["label"]) == {
        "first": None,
        "last": None,
        "reward_first_2_mean": None,
        "reward_last_2_mean": None,
        "label_first_2_mean": None,
        "label_last_2_mean": None,
    }
