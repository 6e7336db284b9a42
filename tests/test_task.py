"""The task seam: the relation task file reads as the published task, and a bad task file
fails in one line naming the file and the key, before anything is trained."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
from ruamel.yaml import YAML
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

from people_relation.params import ParamsError
from people_relation.prompt import CHATML_TEMPLATE
from people_relation.rewards import REWARDS, Reward, log_key
from people_relation.settings import parse_settings, with_values
from people_relation.task import Task, TaskError, load_task, parse_task

RELATION = Path(__file__).resolve().parents[1] / "tasks" / "relation.yaml"

# The published prompt, written out whole: the task file must render exactly this.
PUBLISHED_SYSTEM = (
    "你是一个人物关系分类助手。用户会给出一段中文文本和文本中出现的两个人物，请判断这两个人物之间的关系。\n"
    "关系只能是以下14种之一：不知道、夫妻、父母、兄弟姐妹、上下级、师生、好友、同学、合作、同一个人、情侣、祖孙、同门、亲戚。"
    "如果文本没有说明两人的关系，回答“不知道”。\n"
    "先在<think></think>中写出推理过程，再在<answer></answer>中给出关系，格式如下：\n"
    "<think>\n推理过程\n</think>\n<answer>关系</answer>"
)


def raw_relation() -> dict:
    return YAML(typ="safe").load(RELATION.read_text(encoding="utf-8"))


@pytest.fixture()
def relation() -> Task:
    return load_task(RELATION)


def test_relation_task_is_the_published_one(relation):
    assert relation.labels == [
        "不知道", "夫妻", "父母", "兄弟姐妹", "上下级", "师生", "好友",
        "同学", "合作", "同一个人", "情侣", "祖孙", "同门", "亲戚",
    ]  # fmt: skip
    assert relation.none_label == "不知道"
    assert relation.fields == ("text", "people1", "people2")
    assert relation.mentions == {"people1": "text", "people2": "text"}
    assert relation.system_prompt == PUBLISHED_SYSTEM
    inputs = {"text": "甲与乙是夫妻。", "people1": "甲", "people2": "乙"}
    assert relation.user_message(inputs) == "文本：甲与乙是夫妻。\n人物1：甲\n人物2：乙"
    assert relation.prompt.prefill == "让我一步一步来思考解决。\n<think>"
    assert relation.target_completion(inputs, "夫妻") == "甲和乙的关系是夫妻。\n</think>\n<answer>夫妻</answer>"
    assert list(relation.rewards) == ["format", "label"] and list(relation.rewards.values()) == [1.0, 1.0]
    assert relation.prior == "keywords" and relation.prior_title == "keyword rules"
    assert relation.published[-1].weighted_f1 == 0.8884


def test_is_label_is_exact(relation):
    assert relation.is_label("父母")
    assert not relation.is_label(" 父母")
    assert not relation.is_label("父母亲")
    assert not relation.is_label("")
    assert "not one of the 14 labels" in relation.label_problem("朋友")


def test_the_tokenizer_pieces_are_the_prompts_constant_parts(relation):
    assert relation.prompt_pieces() == (
        "system\n" + PUBLISHED_SYSTEM,
        "user\n文本：",
        "\n人物1：",
        "\n人物2：",
        "assistant\n让我一步一步来思考解决。\n",
    )
    assert relation.vocabulary_pieces()[:4] == ("<think>", "</think>", "<answer>", "</answer>")


def _chatml_tokenizer(template: str) -> PreTrainedTokenizerFast:
    raw = Tokenizer(models.WordLevel({"[UNK]": 0}, unk_token="[UNK]"))
    raw.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(tokenizer_object=raw, unk_token="[UNK]", chat_template=template)


def test_render_prompt_leaves_the_assistant_turn_open(relation):
    inputs = {"text": "甲与乙是夫妻。", "people1": "甲", "people2": "乙"}
    assert [m["role"] for m in relation.build_messages(inputs)] == ["system", "user", "assistant"]
    prompt = relation.render_prompt(_chatml_tokenizer(CHATML_TEMPLATE), inputs)
    assert prompt == (
        "<|im_start|>system\n" + PUBLISHED_SYSTEM + "<|im_end|>\n"
        "<|im_start|>user\n文本：甲与乙是夫妻。\n人物1：甲\n人物2：乙<|im_end|>\n"
        "<|im_start|>assistant\n让我一步一步来思考解决。\n<think>"
    )


def test_render_prompt_rejects_a_template_that_closes_the_prefill(relation):
    closing = "{% for m in messages %}{% if m['role'] != 'assistant' %}{{ m['content'] }}{% endif %}{% endfor %}"
    with pytest.raises(ValueError):  # transformers refuses it, or our check does
        relation.render_prompt(_chatml_tokenizer(closing), {"text": "t", "people1": "t", "people2": "t"})


def test_input_problems_name_the_field(relation):
    assert relation.input_problems({"text": "甲与乙", "people1": "甲", "people2": "丙"}) == [
        "people2 '丙' does not occur in the text"
    ]
    assert relation.input_problems({"text": " ", "people1": "甲", "people2": "乙"}) == ["text is empty"]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda t: t["labels"].append("夫妻"), "labels: duplicate label '夫妻'"),
        (lambda t: t.update(labels=[]), "labels: List should have at least 1 item"),
        (lambda t: t["prompt"].update(user="文本：{sentence}"), "prompt.user names {sentence}, which the data lacks"),
        (lambda t: t["prompt"].update(rationale="{people3}"), "prompt.rationale names {people3}, which the data lacks"),
        (lambda t: t["prompt"].update(system="{labels} {language}"), "prompt.system names {language}"),
        (lambda t: t["rewards"].update(lable=1.0), "rewards: no reward named 'lable'; did you mean 'label'?"),
        (lambda t: t["rewards"].update(label=None), "rewards.label has no weight"),
        (lambda t: t["rewards"].update(label="high"), "rewards.label: Input should be a valid number"),
        (lambda t: t.update(none_label="无关"), "none_label '无关' is not one of the labels"),
        (lambda t: t.update(prior="keyword"), "prior: no prior named 'keyword'; did you mean 'keywords'?"),
        (lambda t: t.update(labels=["正面", "负面"], none_label=None), "prior 'keywords': it answers"),
        (lambda t: t["inputs"].update(people2={"occurs_in": "sentence"}), "people2.occurs_in names 'sentence'"),
        (lambda t: t["prompt"].update(prefill="好的。"), "prompt.prefill must end with '<think>'"),
        (lambda t: t.update(lables=[]), "lables: unknown key; did you mean 'labels'?"),
    ],
)
def test_a_bad_task_fails_in_one_line_naming_the_file_and_key(change, message):
    raw = raw_relation()
    change(raw)
    with pytest.raises(TaskError) as err:
        parse_task(raw, "tasks/mine.yaml")
    text = str(err.value)
    assert text.startswith("tasks/mine.yaml: ") and message in text and "\n" not in text, text


def test_a_bad_task_stops_the_settings_load(tmp_path, params):
    raw = raw_relation()
    raw["labels"].append("夫妻")
    path = tmp_path / "mine.yaml"
    YAML().dump(raw, path)
    bad = copy.deepcopy(params)
    bad["runs"]["relation"]["task"] = str(path)
    with pytest.raises(ParamsError, match=r"task: .*mine\.yaml: labels: duplicate label '夫妻'"):
        parse_settings(bad)
    with pytest.raises(ParamsError, match="no such task file"):
        parse_settings(with_values(params, {"runs.relation.task": str(tmp_path / "absent.yaml")}))


def test_a_task_file_that_is_not_yaml_names_its_line(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("name: x\nlabels: [a, b\n", encoding="utf-8")
    with pytest.raises(TaskError, match=r"broken\.yaml: line \d+: not valid YAML"):
        load_task(path)


def test_a_new_reward_is_one_function_and_one_line_of_the_task(monkeypatch):
    """A reward added to the registry and named in the task file reaches TRL's list, with its
    weight and its own log key."""

    def _brevity(task, train_labels):
        def brevity_reward(completions, **kwargs):
            return [1.0 if len(c) < 40 else 0.0 for c in completions]

        return brevity_reward

    monkeypatch.setitem(REWARDS, "brevity", Reward(_brevity, "short completions"))
    raw = raw_relation()
    raw["rewards"]["brevity"] = 0.5
    task = parse_task(raw, "tasks/relation.yaml")
    functions, weights = task.reward_functions(["夫妻"])
    assert [f.__name__ for f in functions] == ["format_reward", "label_reward", "brevity_reward"]
    assert weights == [1.0, 1.0, 0.5]
    assert functions[2](["短", "长" * 50]) == [1.0, 0.0]
    assert log_key("brevity") == "rewards/brevity_reward/mean"
