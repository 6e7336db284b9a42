"""TRL's ``GRPOConfig`` fields, named in params.yaml's ``grpo`` blocks and passed to TRL as they are.

The locked TRL's fields (name, type, default, help) are in ``grpo_fields.json``, written by
``scripts/trl_fields.py`` (a test fails when it differs from the installed TRL): the settings
check every key against them without importing TRL, which takes seconds.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

GRPO_FIELDS: dict[str, dict[str, Any]] = json.loads(Path(__file__).with_name("grpo_fields.json").read_text("utf-8"))[
    "fields"
]
# GRPOConfig fields the project sets itself, from the settings named here: never in params.
DERIVED_TRL = {
    "output_dir": "train.checkpoints_dir",
    "per_device_train_batch_size": "grpo.prompts_per_device x grpo.num_generations",
    "per_device_eval_batch_size": "grpo.eval_prompts_per_device x grpo.num_generations_eval",
    "model_init_kwargs": "grpo.model_dtype",
    "warmup_steps": "grpo.warmup_ratio",
    "reward_weights": "the task file's rewards",
    "use_vllm": "grpo.vllm_mode",
    "eval_strategy": "grpo.eval_steps",
    "eval_on_start": "grpo.eval_steps",
    "metric_for_best_model": "grpo.best_metric",
    "greater_is_better": "grpo.best_metric",
    "load_best_model_at_end": "grpo.publish",
    "ddp_timeout": "launch.ddp_timeout_s",
    "report_to": "the project's own MLflow logging",
    "disable_dropout": "the project (always true: GRPO's log-probs need a deterministic policy)",
    "shuffle_dataset": "the project (always true)",
    "log_completions": "grpo.completions_every (the project's MLflow tables)",
    "dataloader_num_workers": "the project (0: the rows are in memory)",
    **dict.fromkeys(
        (
            "vllm_server_host",
            "vllm_server_port",
            "vllm_group_port",
            "vllm_server_timeout",
            "vllm_gpu_memory_utilization",
            "vllm_tensor_parallel_size",
            "vllm_max_model_length",
            "vllm_enable_sleep_mode",
        ),
        "the vllm block",
    ),  # fmt: skip
}
# TRL settings every profile states: the project's code reads them, or TRL's default changed
# since the published run (TRL 0.14), so none is left to a default.
STATED_TRL = (
    "max_steps", "learning_rate", "lr_scheduler_type", "weight_decay", "max_grad_norm", "beta",
    "use_bias_correction_kl", "loss_type", "scale_rewards", "epsilon", "num_iterations", "num_generations",
    "gradient_accumulation_steps", "max_completion_length", "mask_truncated_completions", "temperature",
    "top_p", "top_k", "repetition_penalty", "bf16", "use_cpu", "gradient_checkpointing", "logging_steps",
    "save_steps", "save_total_limit", "seed", "eval_steps", "num_generations_eval",
    "vllm_importance_sampling_correction",
)  # fmt: skip
# ... and the bounds the project's arithmetic relies on
TRL_BOUNDS: dict[str, tuple[float, float | None, str]] = {
    "max_steps": (1, None, ">="),
    "num_generations": (2, None, ">="),
    "gradient_accumulation_steps": (1, None, ">="),
    "max_completion_length": (1, None, ">="),
    "logging_steps": (1, None, ">="),
    "save_steps": (1, None, ">="),
    "eval_steps": (1, None, ">="),
    "num_generations_eval": (1, None, ">="),
    "temperature": (0, None, ">"),
    "top_p": (0, 1, ">"),
}


class KeyProblem(ValueError):
    """What is wrong with one key of a section (its messages name the dotted key)."""

    def __init__(self, problems: dict[str, str]) -> None:
        super().__init__("; ".join(f"{k}: {m}" for k, m in problems.items()))
        self.problems = problems


def trl_value(key: str, value: Any) -> Any:
    """``value`` checked against GRPOConfig field ``key``'s type (a number DVC wrote as a string
    is a number), or a ValueError saying what is allowed."""
    kinds = GRPO_FIELDS[key]["kinds"]
    if value is None and key in STATED_TRL:
        raise ValueError("needs a value (null leaves it to TRL's default, which the project does not)")
    if "any" in kinds or (value is None and "None" in kinds):
        return value
    if isinstance(value, int) and not isinstance(value, bool) and ("float" in kinds or "int" in kinds):
        return value  # a whole number stays one (TRL's float fields take it as it is)
    if "bool" in kinds and isinstance(value, bool):
        return value
    if not isinstance(value, bool) and ("int" in kinds or "float" in kinds):
        number = value
        if isinstance(value, str):
            try:
                number = float(value)
            except ValueError:
                number = None
        if isinstance(number, int | float):
            if "int" in kinds and float(number).is_integer() and "float" not in kinds:
                return int(number)
            if "float" in kinds:
                return float(number)
    if "str" in kinds and isinstance(value, str):
        return value
    raise ValueError(f"TRL's GRPOConfig wants {' or '.join(kinds)}, got {value!r}")


def checked_trl_fields(data: dict[str, Any], own: Iterable[str]) -> dict[str, Any]:
    """``data`` (a ``grpo`` block) with every key not in ``own`` checked as a GRPOConfig field
    (known, not one the project sets, of TRL's type, within the project's bounds) and the
    ``STATED_TRL`` ones present; a :class:`KeyProblem` naming each bad key otherwise."""
    own = set(own)
    problems: dict[str, str] = {}
    out = dict(data)
    for key, value in data.items():
        if key in own:
            continue
        if key in DERIVED_TRL:
            problems[key] = f"TRL's {key} is set by the project from {DERIVED_TRL[key]}; set that instead"
        elif key not in GRPO_FIELDS:
            close = difflib.get_close_matches(key, [*own, *GRPO_FIELDS], n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            problems[key] = f"unknown key{hint} (neither this project's nor a field of TRL's GRPOConfig)"
        else:
            try:
                out[key] = trl_value(key, value)
            except ValueError as err:
                problems[key] = str(err)
                continue
            if problem := out_of_bounds(key, out[key]):
                problems[key] = f"{problem}, got {value!r}"
    for key in STATED_TRL:
        if key not in data:
            problems[key] = f"missing (TRL's GRPOConfig {key}, default {GRPO_FIELDS[key]['default']!r}: state it)"
    if problems:
        raise KeyProblem(problems)
    return out


def out_of_bounds(key: str, value: Any) -> str | None:
    if key not in TRL_BOUNDS or not isinstance(value, int | float):
        return None
    low, high, op = TRL_BOUNDS[key]
    if (value < low if op == ">=" else value <= low) or (high is not None and value > high):
        return f"must be {op} {low:g}" + (f" and <= {high:g}" if high is not None else "") + " here"
    return None
