import pytest
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

from people_relation.labels import LABELS, is_label, label_index
from people_relation.prompt import (
    ASSISTANT_PREFILL,
    CHATML_TEMPLATE,
    SYSTEM_PROMPT,
    build_messages,
    render_prompt,
    user_message,
)


def test_fourteen_labels_in_published_order():
    assert LABELS == (
        "不知道",
        "夫妻",
        "父母",
        "兄弟姐妹",
        "上下级",
        "师生",
        "好友",
        "同学",
        "合作",
        "同一个人",
        "情侣",
        "祖孙",
        "同门",
        "亲戚",
    )


def test_is_label_is_exact():
    assert is_label("父母")
    assert not is_label(" 父母")
    assert not is_label("父母亲")
    assert not is_label("")
    assert label_index("亲戚") == 13
    with pytest.raises(ValueError, match="unknown label"):
        label_index("朋友")


def test_system_prompt_lists_every_label_and_the_format():
    for label in LABELS:
        assert label in SYSTEM_PROMPT
    assert "<think>" in SYSTEM_PROMPT and "<answer>" in SYSTEM_PROMPT
    assert SYSTEM_PROMPT.index("不知道") < SYSTEM_PROMPT.index("亲戚")


def test_user_message_is_the_published_template():
    assert user_message("甲与乙是夫妻。", "甲", "乙") == "文本：甲与乙是夫妻。\n人物1：甲\n人物2：乙"


def test_messages_end_with_the_prefilled_assistant_turn():
    messages = build_messages("t", "a", "b")
    assert [m["role"] for m in messages] == ["system", "user", "assistant"]
    assert messages[-1]["content"] == "让我一步一步来思考解决。\n<think>"


def _chatml_tokenizer(template: str) -> PreTrainedTokenizerFast:
    raw = Tokenizer(models.WordLevel({"[UNK]": 0}, unk_token="[UNK]"))
    raw.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(tokenizer_object=raw, unk_token="[UNK]", chat_template=template)


def test_render_prompt_leaves_the_assistant_turn_open():
    prompt = render_prompt(_chatml_tokenizer(CHATML_TEMPLATE), "甲与乙是夫妻。", "甲", "乙")
    assert prompt == (
        "<|im_start|>system\n" + SYSTEM_PROMPT + "<|im_end|>\n"
        "<|im_start|>user\n文本：甲与乙是夫妻。\n人物1：甲\n人物2：乙<|im_end|>\n"
        "<|im_start|>assistant\n" + ASSISTANT_PREFILL
    )


def test_render_prompt_rejects_a_template_that_closes_the_prefill():
    # A template that drops assistant turns cannot continue the prefill.
    closing = "{% for m in messages %}{% if m['role'] != 'assistant' %}{{ m['content'] }}{% endif %}{% endfor %}"
    with pytest.raises(ValueError):
        render_prompt(_chatml_tokenizer(closing), "t", "a", "b")
