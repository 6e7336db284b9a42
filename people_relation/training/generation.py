"""Greedy generation with plain transformers, decoding as the vLLM server does.

The checkpoint GRPO publishes is chosen on greedy answers generated here, in the training
processes; the published model is then validated and evaluated through vLLM
(``--generation-config vllm``, temperature 0). For the two to score the same decoding,
generation here takes nothing from the model folder's ``generation_config.json`` but what
vLLM takes from it too, its end-of-sequence ids: no repetition penalty (Qwen2.5-Instruct's
file sets 1.05), no length rules or suppressed tokens.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from transformers import GenerationConfig, PreTrainedTokenizerFast

from people_relation.dataset import Example
from people_relation.task import Task


def stop_token_ids(model: torch.nn.Module, tokenizer: PreTrainedTokenizerFast) -> list[int]:
    """The tokens an answer ends on, as vLLM stops: the tokenizer's end of turn and the end of
    sequence ids of the model's generation config."""
    configured = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    extra = configured if isinstance(configured, list) else [configured]
    return list(dict.fromkeys(i for i in [tokenizer.eos_token_id, *extra] if i is not None))


def greedy_config(model: torch.nn.Module, tokenizer: PreTrainedTokenizerFast, max_new_tokens: int) -> GenerationConfig:
    """Greedy decoding of at most ``max_new_tokens`` tokens, every rule that could change it stated."""
    return GenerationConfig(
        do_sample=False,
        num_beams=1,
        max_new_tokens=max_new_tokens,
        repetition_penalty=1.0,
        no_repeat_ngram_size=0,
        min_new_tokens=0,
        eos_token_id=stop_token_ids(model, tokenizer),
        pad_token_id=tokenizer.pad_token_id,
    )


@torch.inference_mode()
def generate_completions(
    task: Task,
    model: torch.nn.Module,
    tokenizer: PreTrainedTokenizerFast,
    examples: Sequence[Example],
    max_new_tokens: int,
    batch_size: int,
) -> list[str]:
    model.eval()
    completions: list[str] = []
    tokenizer.padding_side = "left"
    config = greedy_config(model, tokenizer, max_new_tokens)
    # generate() fills what a passed config leaves unset from the model's own: it sees only this one
    own, model.generation_config = model.generation_config, config
    try:
        for start in range(0, len(examples), batch_size):
            batch = examples[start : start + batch_size]
            prompts = [task.render_prompt(tokenizer, e.inputs) for e in batch]
            enc = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
            with torch.autocast("cpu", dtype=torch.bfloat16):
                out = model.generate(**enc, generation_config=config)
            new = out[:, enc["input_ids"].shape[1] :]
            completions.extend(tokenizer.batch_decode(new, skip_special_tokens=True))
    finally:
        model.generation_config = own
    return completions
