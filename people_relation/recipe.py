"""Training profiles resolved into exact GRPO settings and launch commands.

Pure functions of ``params.yaml``: a dry run and the tests read what a GPU run would do
without importing TRL, DeepSpeed or CUDA.

Batch arithmetic. TRL 0.14 (the published run) batched *prompts*: per device and
micro-step, ``prompts_per_device`` prompts, each expanded to ``num_generations``
completions. Current TRL batches *completions*: ``per_device_train_batch_size`` counts
completions and must be a multiple of ``num_generations``. So
``per_device_train_batch_size = prompts_per_device * num_generations``, and one optimizer
step sees ``num_processes * gradient_accumulation_steps * per_device_train_batch_size``
completions: 3 x 8 x (1 x 8) = 192 for the published recipe.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from people_relation.params import ParamsError, get, get_float, get_int, get_str

LOSS_TYPES = ("grpo", "dapo", "dr_grpo", "bnpo")
MODEL_DTYPES = ("float32", "bfloat16", "auto")
SCALE_REWARDS = ("group", "batch", "none")
# published: the two rewards as published; balanced: plus `balance_bonus` (rare labels pay more)
LABEL_REWARDS = ("published", "balanced")
VLLM_MODES = ("off", "server", "colocate")


def default_profile(params: Mapping[str, Any]) -> str:
    name = get_str(params, "train.profile")
    profiles = get(params, "profiles")
    if name not in profiles:
        raise ParamsError(f"params.yaml: train.profile is {name!r}; defined profiles: {', '.join(profiles)}")
    return name


def profile(params: Mapping[str, Any], name: str | None = None) -> dict[str, Any]:
    name = name or default_profile(params)
    profiles = get(params, "profiles")
    if name not in profiles:
        raise ParamsError(f"params.yaml: no profile {name!r}; defined profiles: {', '.join(profiles)}")
    return profiles[name]


def batch_arithmetic(prof: Mapping[str, Any]) -> dict[str, int]:
    """Prompts and completions per micro-step and per optimizer step."""
    generations = get_int(prof, "grpo.num_generations")
    prompts = get_int(prof, "grpo.prompts_per_device")
    accumulation = get_int(prof, "grpo.gradient_accumulation_steps")
    processes = get_int(prof, "launch.num_processes")
    if generations < 2:
        raise ParamsError("params.yaml: grpo.num_generations must be at least 2 (GRPO compares a group)")
    per_device = prompts * generations
    return {
        "num_processes": processes,
        "prompts_per_device": prompts,
        "num_generations": generations,
        "per_device_train_batch_size": per_device,
        "gradient_accumulation_steps": accumulation,
        "prompts_per_step": processes * accumulation * prompts,
        "completions_per_step": processes * accumulation * per_device,
    }


def grpo_config_kwargs(prof: Mapping[str, Any], output_dir: str) -> dict[str, Any]:
    """Every ``GRPOConfig`` field this project relies on, set explicitly (no TRL defaults)."""
    g = get(prof, "grpo")
    batch = batch_arithmetic(prof)
    vllm_mode = get_str(prof, "grpo.vllm_mode", VLLM_MODES)
    kwargs: dict[str, Any] = {
        "output_dir": output_dir,
        "max_steps": get_int(g, "max_steps"),
        "learning_rate": get_float(g, "learning_rate"),
        "lr_scheduler_type": get_str(g, "lr_scheduler_type"),
        "warmup_steps": get_float(g, "warmup_ratio"),  # a float below 1 is a ratio of max_steps
        "weight_decay": get_float(g, "weight_decay"),
        "max_grad_norm": get_float(g, "max_grad_norm"),
        "beta": get_float(g, "beta"),
        # TRL >= 1.x weights the KL term by the importance ratio by default; TRL 0.14 did not
        "use_bias_correction_kl": bool(get(g, "use_bias_correction_kl")),
        # TRL loads the model in float32 unless told otherwise
        "model_init_kwargs": {"dtype": get_str(g, "model_dtype", MODEL_DTYPES)},
        "loss_type": get_str(g, "loss_type", LOSS_TYPES),
        "scale_rewards": get_str(g, "scale_rewards", SCALE_REWARDS),
        "epsilon": get_float(g, "epsilon"),
        "num_iterations": get_int(g, "num_iterations"),
        "num_generations": batch["num_generations"],
        "per_device_train_batch_size": batch["per_device_train_batch_size"],
        "gradient_accumulation_steps": batch["gradient_accumulation_steps"],
        "max_completion_length": get_int(g, "max_completion_length"),
        "mask_truncated_completions": bool(get(g, "mask_truncated_completions")),
        "temperature": get_float(g, "temperature"),
        "top_p": get_float(g, "top_p"),
        "top_k": get_int(g, "top_k"),
        "repetition_penalty": get_float(g, "repetition_penalty"),
        "reward_weights": [float(w) for w in get(g, "reward_weights")],
        "bf16": bool(get(g, "bf16")),
        "use_cpu": bool(get(g, "use_cpu")),
        "gradient_checkpointing": bool(get(g, "gradient_checkpointing")),
        "disable_dropout": True,
        "logging_steps": get_int(g, "logging_steps"),
        "save_steps": get_int(g, "save_steps"),
        "save_total_limit": get_int(g, "save_total_limit"),
        "seed": get_int(g, "seed"),
        "shuffle_dataset": True,
        "report_to": "none",
        "use_vllm": vllm_mode != "off",
        "log_completions": False,
        "dataloader_num_workers": 0,
        **evaluation_kwargs(prof, batch),
        # how long a process waits in a collective (rank 0 alone writes the final model and
        # removes the checkpoints while the others wait)
        "ddp_timeout": get_int(prof, "launch.ddp_timeout_s"),
    }
    if vllm_mode != "off":
        kwargs |= {
            "vllm_mode": vllm_mode,
            "vllm_importance_sampling_correction": bool(get(g, "vllm_importance_sampling_correction")),
        }
        if vllm_mode == "server":
            kwargs |= {
                "vllm_server_host": get_str(prof, "vllm.host"),
                "vllm_server_port": get_int(prof, "vllm.port"),
                "vllm_group_port": get_int(prof, "vllm.group_port"),
                "vllm_server_timeout": get_float(prof, "vllm.connect_timeout_s"),
            }
        else:
            kwargs |= {
                "vllm_gpu_memory_utilization": get_float(prof, "vllm.gpu_memory_utilization"),
                "vllm_tensor_parallel_size": get_int(prof, "vllm.tensor_parallel_size"),
                "vllm_max_model_length": get_int(prof, "vllm.max_model_len"),
                "vllm_enable_sleep_mode": False,
            }
    if len(kwargs["reward_weights"]) != 2:
        raise ParamsError("params.yaml: grpo.reward_weights needs one weight per reward (format, label)")
    if label_reward_kind(prof) == "balanced":
        if kwargs["scale_rewards"] == "group":
            raise ParamsError(
                "params.yaml: grpo.label_reward 'balanced' needs grpo.scale_rewards 'batch' or 'none': "
                "'group' divides each prompt's rewards by their spread, which cancels a per-label weight"
            )
        kwargs["reward_weights"] = [*kwargs["reward_weights"], kwargs["reward_weights"][1]]  # the bonus is label reward
    return kwargs


def label_reward_kind(prof: Mapping[str, Any]) -> str:
    """``published`` (format and label rewards) or ``balanced`` (plus the rare-label bonus)."""
    return get_str(prof, "grpo.label_reward", LABEL_REWARDS)


PUBLISH = ("best", "last")
BEST_METRICS = ("weighted_f1", "macro_f1", "accuracy")


def evaluation_kwargs(prof: Mapping[str, Any], batch: Mapping[str, int]) -> dict[str, Any]:
    """Validation during GRPO: every ``eval_steps``, TRL scores ``num_generations_eval``
    sampled completions per validation prompt with the rewards, and the greedy answers are
    scored (``people_relation.training.grpo.GreedyValidation``: ``eval_greedy_*``). The checkpoint with the
    best greedy ``best_metric`` is published when ``publish`` is ``best``."""
    g = get(prof, "grpo")
    eval_steps, save_steps = get_int(g, "eval_steps"), get_int(g, "save_steps")
    publish = get_str(g, "publish", PUBLISH)
    if eval_steps < 1 or save_steps % eval_steps:
        raise ParamsError(
            f"params.yaml: grpo.save_steps ({save_steps}) must be a multiple of grpo.eval_steps ({eval_steps}): "
            "a checkpoint is kept at evaluations, so the best one can be published"
        )
    generations = get_int(g, "num_generations_eval")
    per_device = get_int(g, "eval_prompts_per_device") * generations
    if generations < 1 or (per_device * batch["num_processes"]) % generations:
        raise ParamsError("params.yaml: grpo.num_generations_eval must be at least 1")
    return {
        "eval_strategy": "steps",
        "eval_steps": eval_steps,
        "eval_on_start": True,  # the curve starts at the start model
        "num_generations_eval": generations,
        "per_device_eval_batch_size": per_device,
        "metric_for_best_model": "eval_greedy_" + get_str(g, "best_metric", BEST_METRICS),
        "greater_is_better": True,
        "load_best_model_at_end": publish == "best",
    }


def launch_command(
    prof: Mapping[str, Any], name: str, params_file: str, entry_module: str, python: str = "python"
) -> list[str]:
    """The command that runs ``entry_module`` (the GRPO process) for profile ``name``: plain
    Python, or ``accelerate launch``."""
    entry = ["-m", entry_module, "--params-file", params_file, "--profile", name]
    config = get(prof, "launch.accelerate_config")
    processes = get_int(prof, "launch.num_processes")
    if processes > 1 and get(prof, "model").get("lora"):
        raise ParamsError("params.yaml: a LoRA profile (model.lora) trains in one process (launch.num_processes: 1)")
    if not config:
        if processes != 1:
            raise ParamsError("params.yaml: launch.num_processes > 1 needs launch.accelerate_config")
        return [python, *entry]
    command = [python, "-m", "accelerate.commands.launch", "--config_file", str(config)]
    command += ["--num_processes", str(processes)]
    if gpus := get(prof, "launch").get("training_gpus"):
        command += ["--gpu_ids", ",".join(str(g) for g in gpus)]
    return command + entry


def vllm_server_command(prof: Mapping[str, Any], model: str, python: str = "python") -> list[str] | None:
    """TRL's vLLM generation server for ``vllm_mode: server`` (on its own GPU), else None."""
    if get_str(prof, "grpo.vllm_mode", VLLM_MODES) != "server":
        return None
    return [
        python,
        "-m",
        "trl.scripts.vllm_serve",
        "--model",
        model,
        "--host",
        get_str(prof, "vllm.host"),
        "--port",
        str(get_int(prof, "vllm.port")),
        "--tensor_parallel_size",
        str(get_int(prof, "vllm.tensor_parallel_size")),
        "--gpu_memory_utilization",
        str(get_float(prof, "vllm.gpu_memory_utilization")),
        "--max_model_len",
        str(get_int(prof, "vllm.max_model_len")),
    ]
