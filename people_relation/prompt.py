"""What every prompt shares, whatever the task: the format tags, the ChatML template of the
project's own tokenizer, and the check that user text holds no chat-template control token.

A task's prompt (:mod:`people_relation.task`) is rendered through the tokenizer's own chat
template with the assistant turn left open (``continue_final_message=True``), so the model
continues right after ``<think>``. Completions therefore start inside the think block; the
parser and the rewards prepend :data:`THINK_OPEN` before checking the format.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Any, Protocol

THINK_OPEN = "<think>"
THINK_CLOSE = "</think>"
ANSWER_OPEN = "<answer>"
ANSWER_CLOSE = "</answer>"
TAGS: tuple[str, ...] = (THINK_OPEN, THINK_CLOSE, ANSWER_OPEN, ANSWER_CLOSE)

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
