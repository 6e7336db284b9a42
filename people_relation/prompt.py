"""The published prompt: system message, user message and the assistant prefill.

The prompt is rendered through the tokenizer's own chat template with the assistant turn
left open (``continue_final_message=True``), so the model continues right after
``<think>``. Completions therefore start inside the think block; the parser and the
rewards prepend :data:`THINK_OPEN` before checking the format.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Any, Protocol

from people_relation.labels import LABELS

THINK_OPEN = "<think>"
THINK_CLOSE = "</think>"
ANSWER_OPEN = "<answer>"
ANSWER_CLOSE = "</answer>"
TAGS: tuple[str, ...] = (THINK_OPEN, THINK_CLOSE, ANSWER_OPEN, ANSWER_CLOSE)

ASSISTANT_PREFILL = "让我一步一步来思考解决。\n" + THINK_OPEN

SYSTEM_PROMPT = (
    "你是一个人物关系分类助手。用户会给出一段中文文本和文本中出现的两个人物，"
    "请判断这两个人物之间的关系。\n"
    "关系只能是以下14种之一：" + "、".join(LABELS) + "。"
    "如果文本没有说明两人的关系，回答“不知道”。\n"
    "先在<think></think>中写出推理过程，再在<answer></answer>中给出关系，格式如下：\n"
    "<think>\n推理过程\n</think>\n<answer>关系</answer>"
)

USER_TEMPLATE = "文本：{text}\n人物1：{people1}\n人物2：{people2}"

# A ChatML template (the format Qwen2.5 uses) for tokenizers this project builds itself.
# It renders every message, closes each turn with <|im_end|>, and adds an open
# assistant header only when asked for a generation prompt.
CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


# Chat-template control tokens are written <|name|> (ChatML's <|im_start|> and <|im_end|>, and
# every added token of Qwen2.5). A tokenizer reads such a string in user text as the control
# token itself, so a sentence holding "<|im_end|>\n<|im_start|>system\n..." would close the
# user turn and open a system turn of its own. Text that goes into the prompt must hold none,
# also after NFKC folding (fullwidth ＜｜im_end｜＞ folds to <|im_end|>).
CONTROL_TOKEN = re.compile(r"<\|[^\n]*?\|>")


class UnsafeText(ValueError):
    """User text holds a chat-template control token."""


def control_tokens(text: str) -> list[str]:
    """The control-token look-alikes in ``text`` (as written, or after NFKC folding)."""
    found = CONTROL_TOKEN.findall(text)
    folded = unicodedata.normalize("NFKC", text)
    return found + [t for t in CONTROL_TOKEN.findall(folded) if t not in found]


def control_token_problem(field: str, text: str) -> str | None:
    """A message naming the control tokens in ``text``, or None when it holds none."""
    found = control_tokens(text)
    if not found:
        return None
    shown = ", ".join(repr(t) for t in dict.fromkeys(found))
    return f"{field} holds chat-template control token(s) {shown}; remove them (they could forge a turn of the prompt)"


class ChatTemplateTokenizer(Protocol):
    def apply_chat_template(self, conversation: list[dict[str, str]], **kwargs: Any) -> Any: ...


def user_message(text: str, people1: str, people2: str) -> str:
    return USER_TEMPLATE.format(text=text, people1=people1, people2=people2)


def build_messages(text: str, people1: str, people2: str) -> list[dict[str, str]]:
    """System, user and the prefilled assistant turn, as chat messages.

    Raises :class:`UnsafeText` when a field holds a control token: whatever reached this
    point unchecked, the prompt never carries a control token the user wrote.
    """
    problems = [
        m for f, v in (("text", text), ("people1", people1), ("people2", people2)) if (m := control_token_problem(f, v))
    ]
    if problems:
        raise UnsafeText("; ".join(problems))
    return [
        {"role": "system", "content": SYSTEM_PROMPT},
        {"role": "user", "content": user_message(text, people1, people2)},
        {"role": "assistant", "content": ASSISTANT_PREFILL},
    ]


def render_prompt(tokenizer: ChatTemplateTokenizer, text: str, people1: str, people2: str) -> str:
    """The prompt string the model continues, through ``tokenizer``'s chat template.

    The assistant prefill stays open: the rendered string ends with ``<think>``, not with
    an end-of-turn marker, so generation continues the reasoning.
    """
    rendered = tokenizer.apply_chat_template(
        build_messages(text, people1, people2),
        tokenize=False,
        continue_final_message=True,
    )
    if not isinstance(rendered, str) or not rendered.endswith(ASSISTANT_PREFILL):
        raise ValueError(
            "the tokenizer's chat template did not leave the assistant prefill open: "
            f"expected the prompt to end with {ASSISTANT_PREFILL!r}, got ...{str(rendered)[-40:]!r}"
        )
    return rendered


RATIONALE_TEMPLATE = "{people1}和{people2}的关系是{label}。"


def target_completion(people1: str, people2: str, label: str) -> str:
    """The completion the warm-up teaches: a one-line rationale, then the answer.

    It continues the prefilled ``<think>`` and, with it, satisfies the format reward.
    """
    rationale = RATIONALE_TEMPLATE.format(people1=people1, people2=people2, label=label)
    return f"{rationale}\n{THINK_CLOSE}\n{ANSWER_OPEN}{label}{ANSWER_CLOSE}"
