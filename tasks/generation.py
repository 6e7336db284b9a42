"""Greedy generation with plain transformers, for choosing settings on the validation split."""

from __future__ import annotations

import time
from collections.abc import Sequence

import torch
from transformers import PreTrainedTokenizerFast

from people_relation.dataset import Example
from people_relation.metrics import scores
from people_relation.parsing import parse_completion
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


def evaluate_examples(
    model: torch.nn.Module,
    tokenizer: PreTrainedTokenizerFast,
    examples: Sequence[Example],
    max_new_tokens: int,
    batch_size: int,
) -> tuple[dict[str, float], list[str]]:
    """Scores of greedy completions on ``examples``, plus the completions."""
    start = time.monotonic()
    completions = generate_completions(model, tokenizer, examples, max_new_tokens, batch_size)
    parsed = [parse_completion(c) for c in completions]
    result = scores([e.label for e in examples], [p.answer if p.format_ok else None for p in parsed])
    result["format_ok_rate"] = sum(p.format_ok for p in parsed) / len(parsed)
    result["seconds"] = time.monotonic() - start
    return result, completions
