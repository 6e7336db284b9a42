"""Where the train step reads and writes, per profile."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from people_relation.infra.io import project_path
from people_relation.params import get_str
from people_relation.recipe import profile


def train_paths(params: dict[str, Any], name: str) -> dict[str, Path]:
    """Models under ``train.models_dir/<profile>`` (one DVC output), resumable state under
    ``train.checkpoints_dir/<profile>`` (kept across a crash, never a DVC output), reports
    under ``train.reports_dir/<profile>``.

    ``start_model`` is what GRPO starts from: the warm-up model when the profile has a
    warm-up, else the profile's ``model.source`` (a hub id or a local folder).
    """
    prof = profile(params, name)
    root = project_path(get_str(params, "train.models_dir")) / name
    state = project_path(get_str(params, "train.checkpoints_dir")) / name
    reports = project_path(get_str(params, "train.reports_dir")) / name
    paths = {
        "root": root,
        "base": root / "base",
        "warmup": root / "warmup",
        "warmup_state": state / "warmup",
        "checkpoints": state / "grpo",
        "generation_log": state / "generation_server.log",  # TRL's vLLM server (vllm_mode: server)
        "validation_state": state / "validation",  # answers and server logs of validation.engine: vllm
        "final_model": root / "grpo",
        "reports": reports,
        "history": reports / "reward_history.csv",
        "validation_history": reports / "validation_history.csv",  # greedy and sampled scores during GRPO
        "selection": reports / "published_step.json",  # which checkpoint was published, and why
        "metrics": reports / "metrics.json",  # validation scores of each model, reward summary
    }
    source = get_str(prof, "model.source")
    if prof.get("warmup", {}).get("enabled"):
        paths["start_model"] = paths["warmup"]
    elif source == "scratch":
        paths["start_model"] = paths["base"]
    else:
        local = project_path(source)
        paths["start_model"] = local if local.exists() else Path(source)
    return paths


def metrics_path(params: dict[str, Any], name: str) -> Path:
    """``evaluate.metrics_dir/<profile>.json``: the test scores of every model of a profile."""
    return project_path(get_str(params, "evaluate.metrics_dir")) / f"{name}.json"


MODEL_STAGES = ("base", "warmup", "grpo")


def model_dir(params: dict[str, Any], name: str, stage: str) -> Path:
    """The model of ``stage``: ``grpo`` (the trained policy), ``warmup`` (its supervised
    start, CPU profile) or ``base`` (the model before any training: the hub model)."""
    paths = train_paths(params, name)
    if stage == "grpo":
        return paths["final_model"]
    if stage == "warmup":
        return paths["warmup"]
    if stage == "base":
        return paths["base"] if get_str(profile(params, name), "model.source") == "scratch" else paths["start_model"]
    raise ValueError(f"unknown model stage {stage!r}; one of {', '.join(MODEL_STAGES)}")


def tokenizer_dir(params: dict[str, Any], name: str, model: Path) -> Path | None:
    """Where vLLM should load the tokenizer from, when not from the model folder itself."""
    from people_relation.training.tokenizer import STANDALONE_SUBDIR

    if get_str(profile(params, name), "model.tokenizer") == "project":
        return model / STANDALONE_SUBDIR
    return None
