"""Models: the from-scratch CPU model (a small Qwen2-architecture causal LM, saved like a hub
model), and the loaders of any trained model folder and its tokenizer."""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

from people_relation.settings import Arch


def build_scratch_qwen2(tokenizer: PreTrainedTokenizerFast, arch: Arch, seed: int) -> Qwen2ForCausalLM:
    """A randomly initialised Qwen2 whose vocabulary is ``tokenizer``'s."""
    torch.manual_seed(seed)
    config = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=arch.hidden_size,
        intermediate_size=arch.intermediate_size,
        num_hidden_layers=arch.num_layers,
        num_attention_heads=arch.num_heads,
        num_key_value_heads=arch.num_kv_heads,
        max_position_embeddings=arch.max_positions,
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


def load_causal_lm(directory: Path) -> torch.nn.Module:
    """Any trained model folder of this project (scratch, warm-up, GRPO, a hub model), in float32."""
    return AutoModelForCausalLM.from_pretrained(directory, dtype=torch.float32)


def load_model_tokenizer(directory: Path, kind: str):  # noqa: ANN201 (a tokenizer of either kind)
    """The tokenizer saved with a model: ``project`` (ours, loaded exactly) or ``auto`` (a hub
    model's, through AutoTokenizer)."""
    if kind == "project":
        from people_relation.training.tokenizer import load_tokenizer

        return load_tokenizer(directory)
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(directory)
