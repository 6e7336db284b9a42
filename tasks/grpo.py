"""GRPO with TRL's ``GRPOTrainer`` and the project's two rule-based rewards.

Runs inside one training process (``python -m tasks.grpo_entry``, or under
``accelerate launch`` for several GPUs). Checkpoints every ``save_steps``; started again,
it resumes from the newest checkpoint. Every logged step goes to the log and to MLflow
(when a run is given), with a table of sample completions every ``completions_every``
steps; the reward curves are written from TRL's log history at the end.
"""

from __future__ import annotations

import csv
import logging
import math
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from datasets import Dataset
from transformers import PreTrainedTokenizerFast, TrainerCallback

from people_relation.dataset import Example
from people_relation.prompt import render_prompt
from people_relation.rewards import completion_text, format_reward, label_reward

log = logging.getLogger(__name__)

CHECKPOINT_PREFIX = "checkpoint-"


def prompt_dataset(
    tokenizer: PreTrainedTokenizerFast, examples: Sequence[Example], max_prompt_length: int
) -> tuple[Dataset, int]:
    """String prompts (rendered with the prefill open), gold labels and row ids, and the
    longest prompt in tokens.

    Prompts are never cut: a cut prompt loses the start of the chat template (the system
    turn), and what vLLM generates from would differ from what the loss sees. A prompt
    longer than ``max_prompt_length`` stops the run before any training, naming the row.
    """
    rows, longest = [], 0
    for e in examples:
        prompt = render_prompt(tokenizer, e.text, e.people1, e.people2)
        length = len(tokenizer(prompt, add_special_tokens=False)["input_ids"])
        if length > max_prompt_length:
            raise ValueError(
                f"the prompt of training row {e.id} is {length} tokens, over grpo.max_prompt_length "
                f"({max_prompt_length}); raise it (and vllm.max_model_len with it)"
            )
        longest = max(longest, length)
        rows.append({"prompt": prompt, "label": e.label, "id": e.id})
    return Dataset.from_list(rows), longest


class CompletionRecorder:
    """Keeps the latest batch the rewards saw, for the completions table, and counts the
    completions and distinct prompts this process scored since the last optimizer step."""

    def __init__(self) -> None:
        self.latest: list[dict[str, Any]] = []
        self.completions = 0
        self.prompt_ids: set[str] = set()

    def take_counts(self) -> tuple[int, list[str]]:
        counts = (self.completions, sorted(self.prompt_ids))
        self.completions, self.prompt_ids = 0, set()
        return counts

    def wrap(self, fn: Callable[..., list[float]]) -> Callable[..., list[float]]:
        def reward(completions: Sequence[Any], **kwargs: Any) -> list[float]:
            values = fn(completions, **kwargs)
            if fn is label_reward:
                self.completions += len(completions)
                self.prompt_ids.update(str(i) for i in kwargs.get("id") or ())
                prompts = kwargs.get("prompts") or [""] * len(completions)
                self.latest = [
                    {"prompt_tail": str(p)[-80:], "completion": completion_text(c), "label": gold, "label_reward": v}
                    for p, c, gold, v in zip(prompts, completions, kwargs["label"], values, strict=True)
                ]
            return values

        reward.__name__ = fn.__name__  # TRL logs rewards under the function's name
        return reward


ROLLOUT_PROMPTS = "rollout/prompts"
ROLLOUT_COMPLETIONS = "rollout/completions"


class ProgressCallback(TrainerCallback):
    """A line per logged step, and the step's metrics to MLflow when ``mlflow_run_id`` is given.

    Each optimizer step also records what was actually scored in it, summed over every
    process: ``rollout/completions`` and ``rollout/prompts`` (distinct prompt ids), in the
    log history (so in the reward history CSV) and in MLflow.
    """

    def __init__(self, recorder: CompletionRecorder, completions_every: int, mlflow_run_id: str | None) -> None:
        self.recorder = recorder
        self.completions_every = completions_every
        self.mlflow_run_id = mlflow_run_id
        self.rollout: dict[str, float] = {}

    def on_step_end(self, args, state, control, **kwargs):  # noqa: ANN001
        from accelerate.utils import gather_object

        # every process reaches this point once per optimizer step: a safe place for a collective
        per_process = gather_object([self.recorder.take_counts()])
        self.rollout = {
            ROLLOUT_COMPLETIONS: float(sum(n for n, _ in per_process)),
            ROLLOUT_PROMPTS: float(len({i for _, ids in per_process for i in ids})),
        }

    def on_log(self, args, state, control, logs=None, **kwargs):  # noqa: ANN001
        if not state.is_world_process_zero or not logs or "reward" not in logs:
            return
        if self.rollout and state.log_history and state.log_history[-1].get("step") == state.global_step:
            state.log_history[-1].update(self.rollout)  # saved with checkpoints, written to the history CSV
        row = numeric(logs) | self.rollout
        log.info(
            "GRPO step %d/%d reward %.3f (format %.3f, label %.3f) kl %s",
            state.global_step,
            state.max_steps,
            row.get("reward", float("nan")),
            row.get("rewards/format_reward/mean", float("nan")),
            row.get("rewards/label_reward/mean", float("nan")),
            f"{row['kl']:.4f}" if "kl" in row else "-",
        )
        if self.mlflow_run_id:
            import mlflow

            mlflow.log_metrics(
                {metric_name(k): v for k, v in row.items()}, step=state.global_step, run_id=self.mlflow_run_id
            )
            if self.recorder.latest and state.global_step % self.completions_every == 0:
                table = {k: [r[k] for r in self.recorder.latest] for k in self.recorder.latest[0]}
                mlflow.log_table(table, f"completions/step_{state.global_step:05d}.json", run_id=self.mlflow_run_id)


def numeric(logs: dict[str, Any]) -> dict[str, float]:
    return {k: float(v) for k, v in logs.items() if isinstance(v, int | float) and math.isfinite(float(v))}


def metric_name(key: str) -> str:
    """TRL's log key as an MLflow metric name: ``rewards/format_reward/mean`` -> ``grpo/rewards/format_reward/mean``."""
    return "grpo/" + key


def write_history(log_history: Sequence[dict[str, Any]], path: Path) -> int:
    """The reward curves: one CSV row per logged training step (TRL's ``log_history``)."""
    rows = [numeric(entry) | {"step": int(entry["step"])} for entry in log_history if "reward" in entry]
    columns = sorted({k for r in rows for k in r} - {"step"})
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=["step", *columns])
        writer.writeheader()
        writer.writerows(rows)
    return len(rows)


def claim_checkpoint_dir(directory: Path, fingerprint: str) -> None:
    """Keep ``directory``'s checkpoints only if they belong to the same run settings.

    A checkpoint written under other settings (other params, another start model) must
    not be resumed: it is removed, with a log line saying why. With several training
    processes only the main one may call this (see ``tasks.grpo_entry``).
    """
    marker = directory / "FINGERPRINT"
    if directory.exists() and (not marker.is_file() or marker.read_text().strip() != fingerprint):
        log.info("Discarding checkpoints in %s: they were made with other settings", directory)
        shutil.rmtree(directory)
    directory.mkdir(parents=True, exist_ok=True)
    marker.write_text(fingerprint + "\n")


def latest_checkpoint(output_dir: Path) -> Path | None:
    checkpoints = [
        p
        for p in output_dir.glob(f"{CHECKPOINT_PREFIX}*")
        if p.is_dir() and p.name[len(CHECKPOINT_PREFIX) :].isdigit() and (p / "trainer_state.json").is_file()
    ]
    return max(checkpoints, key=lambda p: int(p.name[len(CHECKPOINT_PREFIX) :]), default=None)


def run_grpo(
    model_dir: Path,
    tokenizer: PreTrainedTokenizerFast,
    dataset: Dataset,
    config_kwargs: dict[str, Any],
    completions_every: int,
    mlflow_run_id: str | None,
    peft_config: Any = None,
) -> Any:
    """Train from ``model_dir``; resumes from the newest checkpoint in ``output_dir``."""
    from trl import GRPOConfig, GRPOTrainer

    recorder = CompletionRecorder()
    trainer = GRPOTrainer(
        model=str(model_dir),
        reward_funcs=[recorder.wrap(format_reward), recorder.wrap(label_reward)],
        args=GRPOConfig(**config_kwargs),
        train_dataset=dataset,
        processing_class=tokenizer,
        callbacks=[ProgressCallback(recorder, completions_every, mlflow_run_id)],
        peft_config=peft_config,
    )
    resume = latest_checkpoint(Path(config_kwargs["output_dir"]))
    if resume:
        log.info("Resuming GRPO from %s", resume)
    trainer.train(resume_from_checkpoint=str(resume) if resume else None)
    return trainer
