"""The GPU memory a profile needs, counted from the model's shape and the profile's settings.

The preflight compares these counts with each GPU's free memory before a run is started.
A training process (one per training GPU) goes through parts that never overlap: the
training step, TRL's evaluation, the greedy validation and, with ``vllm.sleep_mode``, vLLM
generating. What one of them holds is freed before the next begins (TRL empties the CUDA
cache before it wakes vLLM). A GPU needs what is held all along plus the largest part.

Held all along:

* the policy's weights in ``grpo.model_dtype``, their gradients and AdamW's fp32 master
  weights and two moments (16 bytes a trained parameter in bf16); under DeepSpeed ZeRO-3
  (``launch.accelerate_config`` with ``zero_stage: 3``) each process holds 1/N of them;
* with LoRA (``model.lora``): the frozen base weights, and the adapters with their
  gradients and optimizer state; the reference model is the base with the adapters off;
* without LoRA and with ``grpo.beta`` > 0: the reference model's weights (sharded too);
* the CUDA context, kernels and the allocator's slack: :data:`CUDA_OVERHEAD_GIB` per process;
* vLLM colocated on the same GPU (``grpo.vllm_mode: colocate``): its share,
  ``vllm.gpu_memory_utilization`` x the GPU's total memory; with ``vllm.sleep_mode`` only
  its CUDA-graph pool (:data:`VLLM_CUDA_GRAPH_GIB`): TRL puts it to sleep at level 2 after
  every generation, which frees its weights and KV cache (vLLM's ``weights`` and
  ``kv_cache`` memory pools) but not the graphs it captured at start.

The training step: the activations of one micro-batch (``prompts_per_device`` x
``num_generations`` sequences of ``max_prompt_length + max_completion_length`` tokens).
With gradient checkpointing each layer's input is kept and one layer is recomputed at a
time. A layer keeps, per token, 15 bytes per hidden unit for attention and its two norms
(Korthikanti et al. 2022, with a fused attention kernel: their 34, less the 19 of a 4h-wide
GeLU MLP), and for Qwen's SwiGLU MLP of ``intermediate_size`` I (5.3h for Qwen2.5-7B)
2h + 8I bytes: its input, the gate's and the up projection's outputs, SiLU's output and the
product. Then the logits of the completion tokens in bf16 (an upper bound: TRL's fused head
scores them in tiles), and under ZeRO-3 the parameters gathered for the layers at work,
DeepSpeed's ``stage3_max_live_parameters`` (:data:`ZERO3_MAX_LIVE_PARAMETERS`).

TRL's evaluation: every evaluation batch, ``eval_prompts_per_device`` x
``num_generations_eval`` completions per process, is scored in one forward pass without
gradients (the reference model's log-probabilities, then the loss): the peak is one layer's
MLP, its three I-wide tensors at once (6I bytes a token) beside the hidden states (6h).

The greedy validation (``GreedyValidation``: ``transformers`` generate in every training
process, its ``grpo.eval_rows`` split over the processes, ``validation.batch_size`` rows at
a time): the KV cache of a batch of ``max_prompt_length + validation.max_new_tokens`` tokens
in bf16, the prefill of its prompts (one layer's MLP at a time), and under ZeRO-3 the whole
policy's weights, which TRL's ``unwrap_model_for_generation`` gathers on every GPU
(``ds3_gather_for_generation``, true by default).

Inside a vLLM share (TRL's colocated engine, TRL's server, the serving of a trained model):
the weights (split over ``tensor_parallel_size`` GPUs), :data:`VLLM_RUNTIME_GIB` of runtime
(activations of a 4,096-token batch, sampler, CUDA graphs), and what is left is KV cache:
``2 x layers x kv_heads x head_dim x 2 bytes`` per token (bf16). vLLM refuses to start when
one sequence of ``max_model_len`` tokens does not fit; fewer sequences than a step asks for
at once only make the step slower (vLLM queues the rest).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from people_relation.settings import Profile

GIB = 1024**3
CUDA_OVERHEAD_GIB = 1.5
VLLM_RUNTIME_GIB = 2.0
# The part of VLLM_RUNTIME_GIB that vLLM's sleep mode does not free: the CUDA graphs it
# captured at start (vLLM 0.31 frees only its "weights" and "kv_cache" memory pools). vLLM
# measures the pool at start and logs it ("CUDA graph pool memory: ... GiB (actual)"); for
# dense text models of a few billion parameters that is about 0.4-0.9 GiB. An allowance
# above it until a run's own log gives the figure.
VLLM_CUDA_GRAPH_GIB = 1.0
ADAM_BYTES = 12  # fp32 master weights and the two moments
# per token and hidden unit, one layer's attention and its two norms, kept for the backward
# pass in bf16 (Korthikanti et al. 2022: 34 for a layer with a fused attention kernel, of
# which 19 are a 4h-wide GeLU MLP; the SwiGLU MLP is counted from its real width)
ATTENTION_BYTES_PER_LAYER = 15
# DeepSpeed's default stage3_max_live_parameters (deepspeed/runtime/zero/config.py), which
# configs/accelerate/deepspeed_zero3.yaml leaves as it is
ZERO3_MAX_LIVE_PARAMETERS = 10**9
DTYPE_BYTES = {"bfloat16": 2, "float16": 2, "auto": 2, "float32": 4}

# the parts of a training process's life; a GPU needs what is held all along plus the largest other
HELD = "held all along"
STEP = "training step"
EVALUATION = "TRL's evaluation"
GREEDY = "greedy validation"
GENERATING = "vLLM generating"


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

    def layer_activation_bytes(self) -> int:
        """Bytes a token keeps in one layer for the backward pass (bf16): attention and norms,
        and the SwiGLU MLP's input, gate and up outputs, SiLU's output and their product."""
        h, i = self.hidden_size, self.intermediate_size
        return ATTENTION_BYTES_PER_LAYER * h + 2 * h + 8 * i

    def forward_peak_bytes(self) -> int:
        """Bytes a token holds at the peak of a forward pass without gradients (bf16): one
        layer's MLP with three I-wide tensors at once (SiLU's output, the up projection's and
        their product) beside three hidden-state tensors (the residual, the normed input, the output)."""
        return 6 * self.intermediate_size + 6 * self.hidden_size


@dataclass(frozen=True)
class Item:
    """One line of the arithmetic: what, how many GiB, the setting that changes it, and the part
    of the run that holds it (:data:`HELD`: all along)."""

    what: str
    gib: float
    setting: str = ""
    part: str = HELD


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
    """What one training GPU holds: the items held all along, and those of the parts of the
    run that never overlap (the training step, TRL's evaluation, the greedy validation, vLLM
    generating while it sleeps otherwise), of which the largest counts. ``vllm``: a
    colocated engine's share, whose items are among the others."""

    items: list[Item]
    vllm: VllmShare | None = None

    @property
    def held_gib(self) -> float:
        return sum(i.gib for i in self.items if i.part == HELD)

    def parts(self) -> dict[str, float]:
        """GiB of each part besides what is held all along, in the order they are listed."""
        sums: dict[str, float] = {}
        for item in self.items:
            if item.part != HELD:
                sums[item.part] = sums.get(item.part, 0.0) + item.gib
        return sums

    @property
    def largest_part(self) -> str | None:
        parts = self.parts()
        return max(parts, key=parts.__getitem__) if parts else None

    @property
    def total_gib(self) -> float:
        return self.held_gib + max(self.parts().values(), default=0.0)

    def settings(self, part: str) -> list[str]:
        """The settings that change the items of ``part``, each once."""
        found = [s.strip() for i in self.items if i.part == part and i.setting for s in i.setting.split(",")]
        return list(dict.fromkeys(found))

    @property
    def fix(self) -> str:
        """The settings to change when the GPU is short: those of the largest part first, then
        those of what is held all along."""
        held = ", ".join(self.settings(HELD))
        largest = self.largest_part
        if largest is None or not self.settings(largest):
            return held
        return f"{', '.join(self.settings(largest))} ({largest}: the largest part); held all along: {held}"

    def describe(self) -> list[str]:
        def line(i: Item) -> str:
            return f"  {i.what}: {i.gib:.1f} GiB" + (f" ({i.setting})" if i.setting else "")

        lines = [f"{HELD}: {self.held_gib:.1f} GiB"] + [line(i) for i in self.items if i.part == HELD]
        for part, gib in self.parts().items():
            lines.append(f"{part}: {gib:.1f} GiB")
            lines += [line(i) for i in self.items if i.part == part]
        largest = self.largest_part
        if largest is None:
            lines.append(f"total: {self.total_gib:.1f} GiB")
        else:
            lines.append(
                f"total: {self.held_gib:.1f} held + {largest} {self.parts()[largest]:.1f} (the largest of the "
                f"parts, which never overlap) = {self.total_gib:.1f} GiB"
            )
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


def greedy_batch(prof: Profile) -> int:
    """Rows one training process generates at once in the greedy validation: its share of
    ``grpo.eval_rows`` (every process answers every N-th row), at most ``validation.batch_size``
    (all the validation rows unknown here: ``batch_size``)."""
    rows, batch = prof.grpo.eval_rows, prof.validation.batch_size
    if rows is None:
        return batch
    return min(batch, math.ceil(rows / prof.launch.num_processes))


def training_need(prof: Profile, shape: ModelShape, total_gib: float, zero: int) -> TrainingNeed:
    """Per training GPU of ``total_gib``, for ``prof`` on a model of ``shape`` under ZeRO stage ``zero``."""
    g, lora = prof.grpo, prof.model.lora
    weight_bytes = DTYPE_BYTES[g.model_dtype]
    shards = prof.launch.num_processes if zero == 3 else 1
    params = shape.parameters()
    h, layers = shape.hidden_size, shape.num_layers
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
    items.append(Item("CUDA context, kernels, allocator slack", CUDA_OVERHEAD_GIB))

    sequences = g.prompts_per_device * g.num_generations
    length = g.max_prompt_length + g.max_completion_length
    tokens = sequences * length
    if g.gradient_checkpointing:
        activations = tokens * (2 * h * layers + shape.layer_activation_bytes())
        how = "gradient checkpointing"
    else:
        activations = tokens * shape.layer_activation_bytes() * layers
        how = "every layer kept"
    items.append(
        Item(
            f"activations ({sequences} sequences x {length} tokens, {how}, SwiGLU MLP {shape.intermediate_size} wide)",
            activations / GIB,
            "grpo.prompts_per_device, grpo.gradient_checkpointing",
            STEP,
        )
    )
    items.append(
        Item(
            f"logits of the completions ({sequences} x {g.max_completion_length} x {shape.vocab_size}, bf16)",
            sequences * g.max_completion_length * shape.vocab_size * 2 / GIB,
            "grpo.max_completion_length",
            STEP,
        )
    )
    live = None
    if zero == 3:
        most = f"{ZERO3_MAX_LIVE_PARAMETERS:.0e}".replace("e+0", "e")
        live = Item(
            f"ZeRO-3 live parameters (stage3_max_live_parameters {most}, {g.model_dtype})",
            min(ZERO3_MAX_LIVE_PARAMETERS, params) * weight_bytes / GIB,
            "launch.accelerate_config",
            STEP,
        )
        items.append(live)

    evaluated = g.eval_prompts_per_device * g.num_generations_eval
    items.append(
        Item(
            f"forward of {evaluated} sampled completions x {length} tokens without gradients (one layer's MLP)",
            evaluated * length * shape.forward_peak_bytes() / GIB,
            "grpo.eval_prompts_per_device",
            EVALUATION,
        )
    )
    if live is not None:
        items.append(Item(live.what, live.gib, live.setting, EVALUATION))

    if zero == 3:
        items.append(
            Item(
                f"the whole policy gathered from the ZeRO-3 shards ({g.model_dtype})",
                params * weight_bytes / GIB,
                "",
                GREEDY,
            )
        )
    rows = greedy_batch(prof)
    answer = g.max_prompt_length + prof.validation.max_new_tokens
    items.append(
        Item(
            f"KV cache ({rows} rows x {answer} tokens, bf16)",
            rows * answer * shape.kv_bytes_per_token() / GIB,
            "validation.batch_size",
            GREEDY,
        )
    )
    items.append(
        Item(
            f"prefill ({rows} rows x {g.max_prompt_length} tokens, one layer's MLP)",
            rows * g.max_prompt_length * shape.forward_peak_bytes() / GIB,
            "validation.batch_size",
            GREEDY,
        )
    )

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
        if prof.vllm.sleep_mode:
            graphs = min(VLLM_CUDA_GRAPH_GIB, vllm.share_gib)
            items.append(Item("vLLM's CUDA-graph pool, kept while vLLM sleeps", graphs, "vllm.sleep_mode"))
            items.append(
                Item(
                    f"colocated vLLM share {vllm.share_gib:.1f} GiB, less its CUDA-graph pool held all along",
                    vllm.share_gib - graphs,
                    "vllm.gpu_memory_utilization",
                    GENERATING,
                )
            )
        else:
            items.append(Item("colocated vLLM share", vllm.share_gib, "vllm.gpu_memory_utilization"))
    return TrainingNeed(items, vllm)


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
