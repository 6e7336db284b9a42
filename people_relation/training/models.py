"""The from-scratch CPU model: a small Qwen2-architecture causal LM, saved like a hub model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM


def build_model(tokenizer: PreTrainedTokenizerFast, arch: dict[str, Any], seed: int) -> Qwen2ForCausalLM:
    """A randomly initialised Qwen2 whose vocabulary is ``tokenizer``'s."""
    torch.manual_seed(seed)
    hidden = int(arch["hidden_size"])
    config = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=int(arch["intermediate_size"]),
        num_hidden_layers=int(arch["num_layers"]),
        num_attention_heads=int(arch["num_heads"]),
        num_key_value_heads=int(arch["num_kv_heads"]),
        max_position_embeddings=int(arch["max_positions"]),
        tie_word_embeddings=True,
        rope_theta=10000.0,
        bos_token_id=None,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        torch_dtype="float32",
    )
    return Qwen2ForCausalLM(config)


def parameter_count(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def save_model(model: torch.nn.Module, tokenizer: PreTrainedTokenizerFast, directory: Path) -> None:
    """Weights in safetensors plus config, generation config and tokenizer: loadable by vLLM too."""
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.bos_token_id = None
    from people_relation.training.tokenizer import save_tokenizer

    model.save_pretrained(directory, safe_serialization=True)
    save_tokenizer(tokenizer, directory)


def load_model(directory: Path) -> torch.nn.Module:
    return AutoModelForCausalLM.from_pretrained(directory, dtype=torch.float32)
