"""Greedy generation with plain transformers, for choosing settings on the validation split."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from transformers import PreTrainedTokenizerFast

from people_relation.dataset import Example
from people_relation.prompt import render_prompt


@torch.inference_mode()
def generate_completions(
    model: torch.nn.Module,
    tokenizer: PreTrainedTokenizerFast,
    examples: Sequence[Example],
    max_new_tokens: int,
    batch_size: int,
) -> list[str]:
    model.eval()
    completions: list[str] = []
    tokenizer.padding_side = "left"
    for start in range(0, len(examples), batch_size):
        batch = examples[start : start + batch_size]
        prompts = [render_prompt(tokenizer, e.text, e.people1, e.people2) for e in batch]
        enc = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = model.generate(
                **enc,
                max_new_tokens=max_new_tokens,
                do_sample=False,
                eos_token_id=tokenizer.eos_token_id,
                pad_token_id=tokenizer.pad_token_id,
            )
        new = out[:, enc["input_ids"].shape[1] :]
        completions.extend(tokenizer.batch_decode(new, skip_special_tokens=True))
    return completions
