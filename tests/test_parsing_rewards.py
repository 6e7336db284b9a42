"""Completions as the policy writes them: after the prefilled ``<think>``."""

import pytest

from people_relation.parsing import parse_completion
from people_relation.rewards import (
    REWARDS,
    balance_bonus,
    completion_text,
    label_weights,
    log_key,
    recorded_reward,
    reward_order,
)
from people_relation.task import Task

GOOD = "甲是乙的丈夫。\n</think>\n<answer>夫妻</answer>"

# (completion, format reward, label reward against gold 夫妻, parsed answer)
CASES = [
    pytest.param(GOOD, 1.0, 1.0, "夫妻", id="well-formed-correct"),
    pytest.param("推理</think>\n<answer>父母</answer>", 1.0, 0.0, "父母", id="well-formed-wrong-label"),
    pytest.param("推理</think>\n<answer>朋友</answer>", 0.5, 0.0, "朋友", id="non-label-answer"),
    pytest.param("推理</think>\n<answer></answer>", 0.5, 0.0, "", id="empty-answer"),
    pytest.param("推理</think>\n<answer> 夫妻 </answer>", 1.0, 1.0, "夫妻", id="label-with-spaces"),
    pytest.param("推理</think>\n<answer>夫妻\n</answer>", 1.0, 1.0, "夫妻", id="label-with-newline"),
    pytest.param("推理</think>\n<answer>夫妻关系</answer>", 0.5, 0.0, "夫妻关系", id="label-inside-longer-answer"),
    pytest.param("推理</think>\n<answer>同一个人</answer>", 1.0, 0.0, "同一个人", id="longer-label"),
    pytest.param("推理</think>\n<answer>父母亲</answer>", 0.5, 0.0, "父母亲", id="label-is-substring-of-answer"),
    pytest.param(GOOD + "\n", 1.0, 1.0, "夫妻", id="trailing-newline"),
    pytest.param(GOOD + "  \n\n", 1.0, 1.0, "夫妻", id="trailing-whitespace"),
    pytest.param(GOOD + "完毕", 0.0, 0.0, "夫妻", id="text-after-answer"),
    pytest.param(GOOD + "\n<answer>父母</answer>", 0.0, 0.0, None, id="two-answers"),
    pytest.param("推理</think>\n<answer>夫妻</answer><answer>父母</answer>", 0.0, 0.0, None, id="two-answers-adjacent"),
    pytest.param("推理</think>\n<answer>夫妻<answer>父母</answer></answer>", 0.0, 0.0, None, id="nested-answer"),
    pytest.param("a<think>b</think></think>\n<answer>夫妻</answer>", 0.0, 0.0, "夫妻", id="nested-think"),
    pytest.param("a</think>\n<think>b</think>\n<answer>夫妻</answer>", 0.0, 0.0, "夫妻", id="two-think-blocks"),
    pytest.param("推理\n<answer>夫妻</answer>", 0.0, 0.0, "夫妻", id="unclosed-think"),
    pytest.param("推理</think>\n<answer>夫妻", 0.0, 0.0, None, id="unclosed-answer"),
    pytest.param("推理</think><answer>夫妻</answer>", 0.0, 0.0, "夫妻", id="no-newline-between"),
    pytest.param("推理</think>\n\n<answer>夫妻</answer>", 0.0, 0.0, "夫妻", id="blank-line-between"),
    pytest.param("推理</think> \n<answer>夫妻</answer>", 0.0, 0.0, "夫妻", id="space-before-newline"),
    pytest.param("", 0.0, 0.0, None, id="empty"),
    pytest.param("夫妻", 0.0, 0.0, None, id="bare-label"),
    pytest.param("<think>推理</think>\n<answer>夫妻</answer>", 0.0, 0.0, "夫妻", id="repeats-prefilled-think"),
    pytest.param("</think>\n<answer>夫妻</answer>", 1.0, 1.0, "夫妻", id="empty-reasoning"),
    pytest.param("多行\n推理\n</think>\n<answer>夫妻</answer>", 1.0, 1.0, "夫妻", id="multiline-reasoning"),
]


@pytest.fixture(scope="module")
def format_reward(task):
    return REWARDS["format"].build(task, [])


@pytest.fixture(scope="module")
def label_reward(task):
    return REWARDS["label"].build(task, [])


@pytest.mark.parametrize("completion,fmt,lab,answer", CASES)
def test_rewards_and_parse(task, format_reward, label_reward, completion, fmt, lab, answer):
    assert format_reward([completion]) == [fmt]
    assert label_reward([completion], label=["夫妻"]) == [lab]
    parsed = task.parse(completion)
    assert parse_completion(completion, task.labels) == parsed  # the task's parse is the parser over its labels
    assert parsed.answer == answer
    assert parsed.format_ok == (fmt > 0)
    # the label counts only where the format reward says a label was answered
    assert (parsed.label is not None) == (fmt == 1.0)
    assert parsed.label == (answer if fmt == 1.0 else None)


def test_parse_returns_the_reasoning(task):
    parsed = task.parse(GOOD)
    assert parsed.think == "甲是乙的丈夫。"
    assert parsed.label == "夫妻"


def test_what_counts_as_a_label_is_the_label_set_given():
    friends = "推理</think>\n<answer>朋友</answer>"
    assert parse_completion(friends, {"朋友", "敌人"}).label == "朋友"
    assert parse_completion(GOOD, {"朋友", "敌人"}).label is None  # 夫妻 is not one of these
    parsed = parse_completion(GOOD, {"朋友", "敌人"})
    assert parsed.format_ok and parsed.answer == "夫妻"
    # the prefix is what the prompt prefilled: without it the same completion has no <think>
    assert not parse_completion(GOOD, {"夫妻"}, prefix="").format_ok
    assert parse_completion("<think>" + GOOD, {"夫妻"}, prefix="").label == "夫妻"


def test_the_task_builds_its_rewards_by_name_with_their_weights_and_log_keys(task):
    functions, weights = task.reward_functions(["夫妻", "父母"])
    # TRL logs a reward under its function's name: rewards/<name>_reward/mean
    assert [f.__name__ for f in functions] == ["format_reward", "label_reward"]
    assert weights == [1.0, 1.0]
    assert [log_key(name) for name in task.rewards] == ["rewards/format_reward/mean", "rewards/label_reward/mean"]
    assert [f([GOOD], label=["夫妻"]) for f in functions] == [[1.0], [1.0]]
    assert recorded_reward(task) == "label" and reward_order(task) == ["label", "format"]
    no_label = Task.model_validate(task.model_dump() | {"rewards": {"format": 1.0, "balance": 2.0}})
    assert recorded_reward(no_label) == "format" and reward_order(no_label) == ["format", "balance"]


def test_batch_shape_and_extra_columns_as_trl_passes_them(format_reward, label_reward):
    completions = [GOOD, "x</think>\n<answer>父母</answer>", "garbage"]
    kwargs = {"prompts": ["p"] * 3, "completion_ids": [[1]] * 3, "text": ["t"] * 3, "trainer_state": None}
    assert format_reward(completions, **kwargs) == [1.0, 1.0, 0.0]
    assert label_reward(completions, label=["夫妻", "父母", "夫妻"], **kwargs) == [1.0, 1.0, 0.0]


def test_conversational_completions(format_reward, label_reward):
    completion = [{"role": "assistant", "content": GOOD}]
    assert completion_text(completion) == GOOD
    assert format_reward([completion]) == [1.0]
    assert label_reward([completion], label=["夫妻"]) == [1.0]


def test_label_reward_needs_one_label_per_completion(label_reward):
    with pytest.raises(ValueError, match="2 completions but 1 labels"):
        label_reward([GOOD, GOOD], label=["夫妻"])


def test_completion_of_unknown_shape_is_a_type_error():
    with pytest.raises(TypeError):
        completion_text(42)


def test_label_weights_favour_rare_labels_and_average_one():
    labels = ["不知道"] * 6 + ["父母"] * 3 + ["祖孙"]
    weights = label_weights(labels)
    assert weights == pytest.approx({"不知道": 10 / 18, "父母": 10 / 9, "祖孙": 10 / 3})
    assert sum(weights[lab] for lab in labels) / len(labels) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="at least one label"):
        label_weights([])


def answering(label: str) -> str:
    return GOOD.replace("夫妻", label)


def test_balance_bonus_adds_to_the_label_reward_only_for_a_right_answer(task, label_reward):
    bonus = balance_bonus(task, {"父母": 0.5, "祖孙": 3.0})
    right, wrong, broken = answering("祖孙"), answering("父母"), "祖孙</answer>"
    completions = [right, wrong, broken, answering("父母")]
    gold = ["祖孙", "祖孙", "祖孙", "父母"]
    assert bonus.__name__ == "balance_reward"  # TRL logs a reward under its function's name
    paid = zip(bonus(completions, label=gold), label_reward(completions, label=gold), strict=True)
    got = [b + lab for b, lab in paid]
    assert got == [3.0, 0.0, 0.0, 0.5]  # a right answer pays the gold label's weight
    with pytest.raises(ValueError, match="no weight for the gold label"):
        bonus([right], label=["同门"])


def test_the_balance_reward_weighs_by_the_training_labels(task):
    """Built by name, the bonus takes its weights from the gold labels of the training prompts."""
    bonus = REWARDS["balance"].build(task, ["父母"] * 3 + ["祖孙"])  # weights 4/6 and 4/2
    assert bonus.__name__ == "balance_reward" and log_key("balance") == "rewards/balance_reward/mean"
    got = bonus([answering("父母"), answering("祖孙"), answering("父母")], label=["父母", "祖孙", "祖孙"])
    assert got == pytest.approx([4 / 6 - 1, 1.0, 0.0])
