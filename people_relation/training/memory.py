"""The GPU memory a profile needs, counted from the model's shape and the profile's settings.

The preflight compares these counts with each GPU's free memory before a run is started.
What is counted, per training process (one per training GPU):

* the policy's weights in ``grpo.model_dtype``, their gradients and AdamW's fp32 master
  weights and two moments (16 bytes a trained parameter in bf16); under DeepSpeed ZeRO-3
  (``launch.accelerate_config`` with ``zero_stage: 3``) each process holds 1/N of them;
* with LoRA (``model.lora``): the frozen base weights, and the adapters with their
  gradients and optimizer state; the reference model is the base with the adapters off;
* without LoRA and with ``grpo.beta`` > 0: the reference model's weights (sharded too);
* activations of one micro-batch (``prompts_per_device`` x ``num_generations`` sequences of
  ``max_prompt_length + max_completion_length`` tokens): with gradient checkpointing each
  layer's input is kept and one layer is recomputed at a time (about 34 bytes per token and
  hidden unit for a layer, after Korthikanti et al. 2022 with a fused attention kernel);
* the logits of the completion tokens of one micro-batch in bf16 (an upper bound: TRL's
  fused head on a GPU scores them in chunks);
* the CUDA context, kernels and the allocator's slack: :data:`CUDA_OVERHEAD_GIB` per process;
* vLLM colocated on the same GPU (``grpo.vllm_mode: colocate``): its share,
  ``vllm.gpu_memory_utilization`` x the GPU's total memory, held through the training step,
  or, with ``vllm.sleep_mode``, only while it generates (TRL puts it to sleep at level 2,
  which frees its weights and KV cache, and wakes it before each generation).

Inside a vLLM share (TRL's colocated engine, TRL's server, the serving of a trained model):
the weights (split over ``tensor_parallel_size`` GPUs), :data:`VLLM_RUNTIME_GIB` of runtime
(activations of a 4,096-token batch, sampler, CUDA graphs), and what is left is KV cache:
``2 x layers x kv_heads x head_dim x 2 bytes`` per token (bf16). vLLM refuses to start when
one sequence of ``max_model_len`` tokens does not fit; fewer sequences than a step asks for
at once only make the step slower (vLLM queues the rest).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from people_relation.settings import Profile

GIB = 1024**3
CUDA_OVERHEAD_GIB = 1.5
VLLM_RUNTIME_GIB = 2.0
ADAM_BYTES = 12  # fp32 master weights and the two moments
ACTIVATION_BYTES_PER_LAYER = 34  # per token and hidden unit, one transformer layer in bf16
DTYPE_BYTES = {"bfloat16": 2, "float16": 2, "auto": 2, "float32": 4}


@dataclass(frozen=True)
class ModelShape:
    """The numbers of a decoder's ``config.json`` that decide its memory (Qwen2 / Llama layout)."""

    hidden_size: int
    intermediate_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    vocab_size: int
    tie_word_embeddings: bool

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> ModelShape:
        return cls(
            hidden_size=config["hidden_size"],
            intermediate_size=config["intermediate_size"],
            num_layers=config["num_hidden_layers"],
            num_heads=config["num_attention_heads"],
            num_kv_heads=config.get("num_key_value_heads") or config["num_attention_heads"],
            vocab_size=config["vocab_size"],
            tie_word_embeddings=bool(config.get("tie_word_embeddings", False)),
        )

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_heads

    def linear_shapes(self) -> dict[str, tuple[int, int]]:
        """(in, out) features of each linear layer of one decoder layer, by module name."""
        h, kv = self.hidden_size, self.num_kv_heads * self.head_dim
        return {
            "q_proj": (h, h),
            "k_proj": (h, kv),
            "v_proj": (h, kv),
            "o_proj": (h, h),
            "gate_proj": (h, self.intermediate_size),
            "up_proj": (h, self.intermediate_size),
            "down_proj": (self.intermediate_size, h),
        }

    def parameters(self) -> int:
        """Every parameter: embeddings, the LM head unless tied, and per layer the linear
        layers, the q/k/v biases (Qwen2) and two norms; the final norm."""
        h, kv = self.hidden_size, self.num_kv_heads * self.head_dim
        per_layer = sum(i * o for i, o in self.linear_shapes().values()) + (h + 2 * kv) + 2 * h
        heads = 1 if self.tie_word_embeddings else 2
        return heads * self.vocab_size * h + self.num_layers * per_layer + h

    def lora_parameters(self, r: int, target_modules: list[str]) -> int:
        """Parameters of rank-``r`` adapters on ``target_modules`` of every layer."""
        shapes = self.linear_shapes()
        unknown = sorted(set(target_modules) - set(shapes))
        if unknown:
            raise ValueError(f"model.lora.target_modules {unknown} are not linear layers of this model")
        return self.num_layers * sum(r * (shapes[m][0] + shapes[m][1]) for m in target_modules)

    def kv_bytes_per_token(self, dtype_bytes: int = 2) -> int:
        return 2 * self.num_layers * self.num_kv_heads * self.head_dim * dtype_bytes


@dataclass(frozen=True)
class Item:
    """One line of the arithmetic: what, how many GiB, and the setting that changes it."""

    what: str
    gib: float
    setting: str = ""
    transient: bool = False  # held only during the forward and backward passes


@dataclass(frozen=True)
class VllmShare:
    """A vLLM engine's share of one GPU and what it holds."""

    role: str
    utilization_key: str
    share_gib: float
    weights_gib: float
    runtime_gib: float
    sequence_gib: float  # the KV cache of one max_model_len sequence
    sequences_wanted: int  # sequences a step (or a serving batch) asks for at once

    @property
    def kv_gib(self) -> float:
        return self.share_gib - self.weights_gib - self.runtime_gib

    @property
    def sequences_at_once(self) -> int:
        return max(0, int(self.kv_gib // self.sequence_gib))

    @property
    def fits(self) -> bool:
        return self.sequences_at_once >= 1

    def at_once_text(self) -> str:
        if self.sequences_at_once >= self.sequences_wanted:
            return f"all {self.sequences_wanted}"
        return f"{self.sequences_at_once} of {self.sequences_wanted}"

    def describe(self) -> str:
        head = f"{self.role}: {self.utilization_key} -> {self.share_gib:.1f} GiB"
        if self.kv_gib < 0:
            return (
                f"{head}, short of weights {self.weights_gib:.1f} + runtime {self.runtime_gib:.1f} by "
                f"{-self.kv_gib:.1f}: no room for a KV cache"
            )
        return (
            f"{head} = weights {self.weights_gib:.1f} + runtime {self.runtime_gib:.1f} + KV cache {self.kv_gib:.1f} "
            f"({self.at_once_text()} sequences at once, {self.sequence_gib * 1024:.0f} MiB each)"
        )


@dataclass(frozen=True)
class TrainingNeed:
    """What one training GPU holds: the items during the training step, and a colocated
    vLLM share (on top of them, or, asleep, in place of the activations)."""

    items: list[Item]
    vllm: VllmShare | None = None
    sleep_mode: bool = False

    @property
    def total_gib(self) -> float:
        held = sum(i.gib for i in self.items)
        if self.vllm is None:
            return held
        if not self.sleep_mode:
            return held + self.vllm.share_gib
        passing = sum(i.gib for i in self.items if i.transient)
        return held - passing + max(passing, self.vllm.share_gib)

    def describe(self) -> list[str]:
        lines = [f"{i.what}: {i.gib:.1f} GiB" + (f" ({i.setting})" if i.setting else "") for i in self.items]
        if self.vllm is not None:
            how = "asleep during the training step (vllm.sleep_mode)" if self.sleep_mode else "held all along"
            lines.append(f"colocated vLLM share, {how}: {self.vllm.share_gib:.1f} GiB")
        lines.append(f"total: {self.total_gib:.1f} GiB")
        return lines


def zero_stage(accelerate_config: Path | None) -> int:
    """The DeepSpeed ZeRO stage an accelerate config file sets (0: none, or no file)."""
    if accelerate_config is None:
        return 0
    import yaml

    config = yaml.safe_load(Path(accelerate_config).read_text(encoding="utf-8")) or {}
    if config.get("distributed_type") != "DEEPSPEED":
        return 0
    return int((config.get("deepspeed_config") or {}).get("zero_stage", 0))


def training_need(prof: Profile, shape: ModelShape, total_gib: float, zero: int) -> TrainingNeed:
    """Per training GPU of ``total_gib``, for ``prof`` on a model of ``shape`` under ZeRO stage ``zero``."""
    g, lora = prof.grpo, prof.model.lora
    weight_bytes = DTYPE_BYTES[g.model_dtype]
    shards = prof.launch.num_processes if zero == 3 else 1
    params = shape.parameters()
    items: list[Item] = []
    if lora is None:
        items.append(Item(f"policy weights ({g.model_dtype}, 1/{shards})", params * weight_bytes / shards / GIB))
        items.append(Item(f"gradients (1/{shards})", params * weight_bytes / shards / GIB))
        items.append(Item(f"AdamW fp32 master weights and moments (1/{shards})", params * ADAM_BYTES / shards / GIB))
        if g.beta > 0:
            items.append(Item(f"reference model (1/{shards})", params * weight_bytes / shards / GIB, "grpo.beta"))
    else:
        adapters = shape.lora_parameters(lora.r, lora.target_modules)
        items.append(Item(f"base weights ({g.model_dtype}, frozen)", params * weight_bytes / GIB, "model.source"))
        items.append(
            Item(
                f"LoRA adapters, gradients and AdamW ({adapters / 1e6:.0f} M parameters)",
                adapters * (2 * weight_bytes + ADAM_BYTES) / GIB,
                "model.lora.r",
            )
        )
    sequences = g.prompts_per_device * g.num_generations
    tokens = sequences * (g.max_prompt_length + g.max_completion_length)
    h, layers = shape.hidden_size, shape.num_layers
    if g.gradient_checkpointing:
        activations = tokens * h * (2 * layers + ACTIVATION_BYTES_PER_LAYER)
        how = "gradient checkpointing"
    else:
        activations = tokens * h * ACTIVATION_BYTES_PER_LAYER * layers
        how = "every layer kept"
    items.append(
        Item(
            f"activations ({sequences} sequences x {g.max_prompt_length + g.max_completion_length} tokens, {how})",
            activations / GIB,
            "grpo.prompts_per_device, grpo.gradient_checkpointing",
            transient=True,
        )
    )
    items.append(
        Item(
            f"logits of the completions ({sequences} x {g.max_completion_length} x {shape.vocab_size}, bf16)",
            sequences * g.max_completion_length * shape.vocab_size * 2 / GIB,
            "grpo.max_completion_length",
            transient=True,
        )
    )
    items.append(Item("CUDA context, kernels, allocator slack", CUDA_OVERHEAD_GIB))
    vllm = None
    if g.vllm_mode == "colocate":
        # TRL's engine in each process generates the whole step's completions of its prompts at once
        wanted = sequences * g.gradient_accumulation_steps
        vllm = vllm_share(
            "colocated vLLM",
            "vllm.gpu_memory_utilization",
            prof.vllm.gpu_memory_utilization,
            total_gib,
            shape,
            prof.vllm.tensor_parallel_size,
            prof.vllm.max_model_len,
            wanted,
        )
    return TrainingNeed(items, vllm, bool(prof.vllm.sleep_mode) and vllm is not None)


def vllm_share(
    role: str,
    key: str,
    utilization: float,
    total_gib: float,
    shape: ModelShape,
    tensor_parallel: int,
    max_model_len: int,
    wanted: int,
) -> VllmShare:
    return VllmShare(
        role=role,
        utilization_key=key,
        share_gib=utilization * total_gib,
        weights_gib=shape.parameters() * 2 / tensor_parallel / GIB,
        runtime_gib=VLLM_RUNTIME_GIB,
        sequence_gib=max_model_len * shape.kv_bytes_per_token() / tensor_parallel / GIB,
        sequences_wanted=wanted,
    )


def server_share(prof: Profile, shape: ModelShape, total_gib: float) -> VllmShare | None:
    """TRL's generation server on its own GPU(s) (``grpo.vllm_mode: server``): every process's
    completions of a step are asked of it together."""
    g = prof.grpo
    if g.vllm_mode != "server":
        return None
    wanted = prof.launch.num_processes * g.prompts_per_device * g.num_generations * g.gradient_accumulation_steps
    return vllm_share(
        "vLLM generation server",
        "vllm.gpu_memory_utilization",
        prof.vllm.gpu_memory_utilization,
        total_gib,
        shape,
        prof.vllm.tensor_parallel_size,
        prof.vllm.max_model_len,
        wanted,
    )


def serving_share(prof: Profile, shape: ModelShape, total_gib: float) -> VllmShare | None:
    """The trained model served for validation and evaluation, after training (``serve``)."""
    s = prof.serve
    if s.device != "gpu" or s.gpu_memory_utilization is None:
        return None
    return vllm_share(
        "serving the trained model",
        "serve.gpu_memory_utilization",
        s.gpu_memory_utilization,
        total_gib,
        shape,
        s.tensor_parallel_size,
        s.max_model_len,
        s.max_num_seqs,
    )
