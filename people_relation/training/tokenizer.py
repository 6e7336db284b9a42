"""A character-level tokenizer for the from-scratch CPU model.

Chinese is close to one character a token, so the base vocabulary is the characters of
the training split. On top of it, as single tokens:

* the ChatML markers, as *special* tokens (skipped when decoding);
* the format tags ``<think> </think> <answer> </answer>`` and the task's labels, as normal
  tokens, so decoding with ``skip_special_tokens=True`` (what TRL does) keeps them;
* the constant pieces of the task's prompt (the system message, the role headers with
  the prefill, the user template's literal parts: ``人物1：``/``人物2：`` for the relation
  task), as normal tokens. The prompt text is unchanged and round-trips exactly; it just
  costs ~70 tokens instead of ~300.

Saved as a plain transformers ``PreTrainedTokenizerFast`` with a ChatML chat template.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

from people_relation.infra.paths import STANDALONE_SUBDIR
from people_relation.prompt import CHATML_TEMPLATE
from people_relation.task import Task

PAD, UNK, IM_START, IM_END = "<|endoftext|>", "<|unk|>", "<|im_start|>", "<|im_end|>"
SPECIAL_TOKENS = (PAD, UNK, IM_START, IM_END)


def build_tokenizer(task: Task, texts: Iterable[str]) -> PreTrainedTokenizerFast:
    """A tokenizer whose base vocabulary is every character of ``texts`` (and of the task's
    system prompt), with the task's pieces (:meth:`Task.vocabulary_pieces`) as single tokens."""
    chars = sorted({ch for text in texts for ch in text} | set("\n0123456789") | set(task.system_prompt))
    vocab = {tok: i for i, tok in enumerate((*SPECIAL_TOKENS, *chars))}
    raw = Tokenizer(models.WordLevel(vocab, unk_token=UNK))
    raw.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
    raw.decoder = decoders.Fuse()
    raw.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in SPECIAL_TOKENS])
    pieces = task.vocabulary_pieces()
    raw.add_tokens([AddedToken(p, special=False, normalized=False) for p in pieces])
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=raw,
        bos_token=None,
        eos_token=IM_END,
        pad_token=PAD,
        unk_token=UNK,
        additional_special_tokens=[IM_START],
        chat_template=CHATML_TEMPLATE,
        padding_side="left",
        model_max_length=1024,
    )
    return tokenizer


def save_tokenizer(tokenizer: PreTrainedTokenizerFast, directory: Path) -> None:
    """Save into ``directory`` (beside the model) and, alone, into ``directory/tokenizer``."""
    tokenizer.save_pretrained(directory)
    tokenizer.save_pretrained(Path(directory) / STANDALONE_SUBDIR)


def load_tokenizer(directory: Path) -> PreTrainedTokenizerFast:
    """Our saved tokenizer, exactly: ``PreTrainedTokenizerFast`` reads ``tokenizer.json`` as is.

    (``AutoTokenizer`` on a directory whose model config says qwen2 builds Qwen's own
    tokenizer class, which rebuilds Qwen's normaliser and pre-tokenizer and garbles Chinese;
    the standalone copy in ``STANDALONE_SUBDIR`` has no model config, so AutoTokenizer
    loads it exactly.)
    """
    return PreTrainedTokenizerFast.from_pretrained(directory)
