"""Where each stage reads and writes, per profile: one place for every path the code uses.

The folders themselves are settings (typed ``OutputDir`` in :mod:`people_relation.settings`);
this module names the files inside them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import get_args

from people_relation.infra.io import project_path
from people_relation.settings import Evaluate, ModelPhase, Profile, Settings, Split

MODEL_PHASES = get_args(ModelPhase)
# A copy of the tokenizer alone inside a model folder, for tools that load it with
# ``AutoTokenizer`` (vLLM): with no model config beside it, AutoTokenizer reads
# ``tokenizer.json`` as is (see people_relation.training.tokenizer.load_tokenizer).
STANDALONE_SUBDIR = "tokenizer"


@dataclass(frozen=True)
class TrainPaths:
    """Models under ``train.models_dir/<profile>`` (one DVC output), resumable state under
    ``train.checkpoints_dir/<profile>`` (kept across a crash, never a DVC output), reports
    under ``train.reports_dir/<profile>``.

    ``start_model`` is what GRPO starts from: the warm-up model when the profile has a
    warm-up, else the profile's ``model.source`` (a hub id or a local folder).
    """

    root: Path
    base: Path
    warmup: Path
    warmup_state: Path
    checkpoints: Path
    generation_log: Path  # TRL's vLLM server (vllm_mode: server)
    validation_state: Path  # answers and server logs of validation.engine: vllm
    final_model: Path
    reports: Path
    history: Path
    validation_history: Path  # greedy and sampled scores during GRPO
    selection: Path  # which checkpoint was published, and why
    metrics: Path  # validation scores of each model, reward summary
    validation_answers: Path  # each model's greedy answer to each validation row (for intervals)
    resolved_profile: Path  # the profile complete, as DVC tracks it (flows/profile.py)
    start_model: Path

    def model(self, prof: Profile, phase: str) -> Path:
        """The model of ``phase``: ``grpo`` (the trained policy), ``warmup`` (its supervised
        start, CPU profile) or ``base`` (the model before any training: the hub model)."""
        if phase == "grpo":
            return self.final_model
        if phase == "warmup":
            return self.warmup
        if phase == "base":
            return self.base if prof.model.built_here else self.start_model
        raise ValueError(f"unknown model phase {phase!r}; one of {', '.join(MODEL_PHASES)}")


@dataclass(frozen=True)
class Arm:
    """One profile's run, resolved once and passed down: the settings it was read from, the
    profile's name and typed settings, and where it reads and writes. The train, evaluate
    and profile steps, the GRPO process and the preflight take one (:func:`resolve_arm`)
    instead of a name to look up again."""

    settings: Settings
    name: str
    profile: Profile
    paths: TrainPaths

    def model(self, phase: str) -> Path:
        """The folder of the ``phase`` model (``base``, ``warmup`` or ``grpo``)."""
        return self.paths.model(self.profile, phase)


def resolve_arm(settings: Settings, name: str | None = None) -> Arm:
    """Profile ``name`` (default: the run's, ``runs.<run>.profile``) resolved; a ParamsError naming the
    defined profiles when there is no such profile."""
    name = settings.profile_name(name)
    return Arm(settings=settings, name=name, profile=settings.profile(name), paths=train_paths(settings, name))


def train_paths(settings: Settings, name: str) -> TrainPaths:
    prof = settings.profile(name)
    root = project_path(settings.train.models_dir) / name
    state = project_path(settings.train.checkpoints_dir) / name
    reports = project_path(settings.train.reports_dir) / name
    if prof.warmup.enabled:
        start = root / "warmup"
    elif prof.model.built_here:
        start = root / "base"
    else:
        local = project_path(prof.model.source)
        start = local if local.exists() else Path(prof.model.source)
    return TrainPaths(
        root=root,
        base=root / "base",
        warmup=root / "warmup",
        warmup_state=state / "warmup",
        checkpoints=state / "grpo",
        generation_log=state / "generation_server.log",
        validation_state=state / "validation",
        final_model=root / "grpo",
        reports=reports,
        history=reports / "reward_history.csv",
        validation_history=reports / "validation_history.csv",
        selection=reports / "published_step.json",
        metrics=reports / "metrics.json",
        validation_answers=reports / "validation_answers.jsonl",
        resolved_profile=reports / "profile.yaml",
        start_model=start,
    )


def split_file(split: Split, name: str) -> Path:
    """``split.out_dir/<name>.jsonl``: the train, validation or test rows."""
    return project_path(split.out_dir) / f"{name}.jsonl"


def metrics_path(evaluate: Evaluate, name: str) -> Path:
    """``evaluate.metrics_dir/<profile>.json``: the test scores of every model of a profile."""
    return project_path(evaluate.metrics_dir) / f"{name}.json"


def tokenizer_dir(prof: Profile, model: Path) -> Path | None:
    """Where vLLM should load the tokenizer from, when not from the model folder itself."""
    return model / STANDALONE_SUBDIR if prof.model.tokenizer == "project" else None
