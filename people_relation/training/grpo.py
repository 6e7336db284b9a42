"""GRPO with TRL's ``GRPOTrainer`` and the task's rule-based rewards.

Runs inside one training process (``python -m people_relation.training.grpo_process``, or under
``accelerate launch`` for several GPUs). Checkpoints every ``save_steps``; started again,
it resumes from the newest checkpoint. Every logged step goes to the log and to MLflow
(when a run is given), with a table of sample completions every ``completions_every``
steps; the reward curves are written from TRL's log history at the end.
"""

from __future__ import annotations

import csv
import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from datasets import Dataset
from transformers import PreTrainedTokenizerFast, TrainerCallback

from people_relation.dataset import Example
from people_relation.metrics import scores
from people_relation.monitor import (
    CollapseRule,
    answer_shares,
    answer_summary,
    collapsed_label,
    over_limit,
    per_label_mean,
)
from people_relation.rewards import completion_text, function_name, log_key, recorded_reward
from people_relation.settings import CollapseGuard, Validation
from people_relation.split import stratified_holdout
from people_relation.task import Task

log = logging.getLogger(__name__)

CHECKPOINT_PREFIX = "checkpoint-"


def prompt_dataset(
    task: Task, tokenizer: PreTrainedTokenizerFast, examples: Sequence[Example], max_prompt_length: int
) -> tuple[Dataset, int]:
    """String prompts (rendered with the prefill open), gold labels and row ids, and the
    longest prompt in tokens.

    Prompts are never cut: a cut prompt loses the start of the chat template (the system
    turn), and what vLLM generates from would differ from what the loss sees. A prompt
    longer than ``max_prompt_length`` stops the run before any training, naming the row.
    """
    rows, longest = [], 0
    for e in examples:
        prompt = task.render_prompt(tokenizer, e.inputs)
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
    """Keeps the latest batch the rewards saw, for the completions table, and collects what
    this process scored in training since the last optimizer step: completions, distinct
    prompts, answers and the recorded reward (:func:`recorded_reward`) of each gold label.
    Evaluation batches (the policy in eval mode, see ``is_training``) are not counted."""

    def __init__(self, task: Task) -> None:
        self.task = task
        self.recorded = function_name(recorded_reward(task))
        self.latest: list[dict[str, Any]] = []
        self.is_training: Callable[[], bool] = lambda: True
        self._reset()

    def _reset(self) -> None:
        self.completions = 0
        self.prompt_ids: set[str] = set()
        self.answers: list[str | None] = []
        self.golds: list[str] = []
        self.label_rewards: list[float] = []

    def take_step(self) -> dict[str, Any]:
        step = {
            "completions": self.completions,
            "prompt_ids": sorted(self.prompt_ids),
            "answers": self.answers,
            "golds": self.golds,
            "label_rewards": self.label_rewards,
        }
        self._reset()
        return step

    def wrap(self, fn: Callable[..., list[float]]) -> Callable[..., list[float]]:
        def reward(completions: Sequence[Any], **kwargs: Any) -> list[float]:
            values = fn(completions, **kwargs)
            if fn.__name__ == self.recorded and self.is_training():
                texts = [completion_text(c) for c in completions]
                self.completions += len(completions)
                self.prompt_ids.update(str(i) for i in kwargs.get("id") or ())
                self.answers += [self.task.parse(t).label for t in texts]
                self.golds += list(kwargs["label"])
                self.label_rewards += [float(v) for v in values]
                prompts = kwargs.get("prompts") or [""] * len(completions)
                self.latest = [
                    {"prompt_tail": str(p)[-80:], "completion": t, "label": gold, self.recorded: v}
                    for p, t, gold, v in zip(prompts, texts, kwargs["label"], values, strict=True)
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
        self.task = recorder.task
        self.completions_every = completions_every
        self.mlflow_run_id = mlflow_run_id
        self.rollout: dict[str, float] = {}

    def on_step_end(self, args, state, control, **kwargs):  # noqa: ANN001
        from accelerate.utils import gather_object

        # every process reaches this point once per optimizer step: a safe place for a collective
        steps = gather_object([self.recorder.take_step()])
        answers = [a for s in steps for a in s["answers"]]
        self.rollout = {
            ROLLOUT_COMPLETIONS: float(sum(s["completions"] for s in steps)),
            ROLLOUT_PROMPTS: float(len({i for s in steps for i in s["prompt_ids"]})),
        }
        if answers:
            self.rollout |= {f"answers/{k}": v for k, v in answer_summary(self.task.labels, answers).items()}
            golds = [g for s in steps for g in s["golds"]]
            rewards = [r for s in steps for r in s["label_rewards"]]
            recorded = self.recorder.recorded
            self.rollout |= {f"{recorded}/{k}": v for k, v in per_label_mean(golds, rewards).items()}

    def on_log(self, args, state, control, logs=None, **kwargs):  # noqa: ANN001
        if not state.is_world_process_zero or not logs or "reward" not in logs:
            return
        if self.rollout and state.log_history and state.log_history[-1].get("step") == state.global_step:
            state.log_history[-1].update(self.rollout)  # saved with checkpoints, written to the history CSV
        row = numeric(logs) | self.rollout
        parts = ", ".join(f"{name} {row.get(log_key(name), float('nan')):.3f}" for name in self.task.rewards)
        log.info(
            "GRPO step %d/%d reward %.3f (%s) kl %s",
            state.global_step,
            state.max_steps,
            row.get("reward", float("nan")),
            parts,
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


GREEDY = "eval_greedy_"
OVER_LIMIT = GREEDY + "over_limit"  # the label over the collapse guard's limit at this evaluation


class GreedyValidation(TrainerCallback):
    """At every evaluation, the policy's greedy answers to the validation rows: weighted
    F1, accuracy, format rate and the answer distribution, added to the evaluation's
    metrics (before the Trainer picks the best checkpoint by ``metric_for_best_model``)
    and to its log entry. TRL's evaluation before it scores sampled completions with the
    rewards; this is what a user of the published model gets.

    Every process generates its share of the rows (under ZeRO-3 with the gathered
    weights), the answers are gathered, and each process computes the same numbers. The
    collapse guard reads them: see :mod:`people_relation.monitor`.

    The scores are also given for two halves of the rows (stratified by label, seeded with
    ``selection_seed``): ``select_*``, by which the best checkpoint is chosen, and
    ``check_*``, which played no part in the choice. A step chosen for its luck on the
    select half shows it on the check half.
    """

    def __init__(
        self,
        task: Task,
        rows: Sequence[Example],
        tokenizer: PreTrainedTokenizerFast,
        settings: Validation,
        guard: Guard,
        mlflow_run_id: str | None,
        selection_seed: int,
    ) -> None:
        self.task = task
        self.rows = list(rows)
        self.halves = selection_halves(self.rows, selection_seed)
        self.tokenizer = tokenizer
        self.settings = settings
        self.guard = guard
        self.mlflow_run_id = mlflow_run_id
        self.trainer: Any = None  # set once the trainer exists
        self.gold_shares = answer_shares(task.labels, [e.label for e in self.rows])

    def answers(self, args: Any) -> list[str]:
        from accelerate.utils import gather_object
        from trl.models.utils import unwrap_model_for_generation

        from people_relation.training.generation import generate_completions

        accelerator = self.trainer.accelerator
        mine = list(range(accelerator.process_index, len(self.rows), accelerator.num_processes))
        side = self.tokenizer.padding_side
        with unwrap_model_for_generation(
            self.trainer.model_wrapped, accelerator, gather_deepspeed3_params=args.ds3_gather_for_generation
        ) as model:
            completions = generate_completions(
                self.task,
                model,
                self.tokenizer,
                [self.rows[i] for i in mine],
                self.settings.max_new_tokens,
                self.settings.batch_size,
            )
            model.train()
        self.tokenizer.padding_side = side
        by_row = dict(gather_object(list(zip(mine, completions, strict=True))))
        return [by_row[i] for i in range(len(self.rows))]

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):  # noqa: ANN001
        completions = self.answers(args)
        labels = self.task.labels
        answers = [self.task.parse(c).label for c in completions]
        result = scores(labels, [e.label for e in self.rows], answers)
        result |= {"format_ok_rate": sum(a is not None for a in answers) / len(answers)}
        result |= answer_summary(labels, answers)
        for half, index in self.halves.items():
            part = scores(labels, [self.rows[i].label for i in index], [answers[i] for i in index])
            result |= {f"{half}_{k}": v for k, v in part.items() if k != "invalid_rate"}
        greedy = {GREEDY + k: v for k, v in result.items()}
        over = over_limit(answer_shares(labels, answers), self.gold_shares, self.guard.rule)
        entry = state.log_history[-1] if state.log_history else {}
        if entry.get("step") != state.global_step or not any(k.startswith("eval_") for k in entry):
            entry = {"step": state.global_step}
            state.log_history.append(entry)
        entry.update(greedy | {OVER_LIMIT: over})
        if metrics is not None:
            metrics.update(greedy)  # the Trainer chooses the best checkpoint from these
        if not state.is_world_process_zero:
            self.check_guard(state, control, write=False)
            return
        sampled = log_key(recorded_reward(self.task), "eval_")
        log.info(
            "Validation at step %d: greedy weighted F1 %.3f, accuracy %.3f, format %.3f, %d labels answered, "
            "top answer %.0f%% of rows; sampled %s %s",
            state.global_step,
            result["weighted_f1"],
            result["accuracy"],
            result["format_ok_rate"],
            result["labels_answered"],
            100 * result["top_share"],
            recorded_reward(self.task) + " reward",
            f"{entry[sampled]:.3f}" if sampled in entry else "-",
        )
        if self.mlflow_run_id:
            import mlflow

            mlflow.log_metrics(
                {metric_name(k): v for k, v in numeric(entry).items() if k != "step"},
                step=state.global_step,
                run_id=self.mlflow_run_id,
            )
            table = {
                "row": [e.id for e in self.rows],
                "label": [e.label for e in self.rows],
                "answer": [a or "" for a in answers],
                "completion": completions,
            }
            mlflow.log_table(table, f"validation/step_{state.global_step:05d}.json", run_id=self.mlflow_run_id)
        self.check_guard(state, control, write=True)

    def check_guard(self, state, control, write: bool) -> None:  # noqa: ANN001
        if self.guard.action == "off":
            return
        # one value per trained step (a resumed run evaluates its first step again); the start
        # model (step 0) is not counted: GRPO has not acted on it yet
        by_step = {e["step"]: e[OVER_LIMIT] for e in state.log_history if OVER_LIMIT in e and e["step"] > 0}
        label = collapsed_label([by_step[s] for s in sorted(by_step)], self.guard.rule)
        if label is None:
            return
        share = top_share_note(state.log_history[-1])
        message = (
            f"collapse guard: the greedy answer {label!r} exceeded its limit (max of {self.guard.rule.ratio:g} x its "
            f"gold share {self.gold_shares.get(label, 0.0):.1%} and {self.guard.rule.min_share:.0%}) in the last "
            f"{self.guard.rule.patience} evaluations, up to step {state.global_step}{share}"
        )
        if self.guard.action == "stop":
            control.should_training_stop = True
            message += "; training stops here and the best checkpoint is published"
        if write:
            log.warning(message)
            state.log_history[-1]["collapse_guard"] = message
            if self.mlflow_run_id:
                from mlflow import MlflowClient

                MlflowClient().set_tag(self.mlflow_run_id, "collapse_guard", message)


def top_share_note(entry: dict[str, Any]) -> str:
    share = entry.get(GREEDY + "top_share")
    return f" (top answer {share:.0%} of the rows)" if isinstance(share, float) else ""


@dataclass(frozen=True)
class Guard:
    action: str  # stop | warn | off
    rule: CollapseRule

    @classmethod
    def of(cls, settings: CollapseGuard) -> Guard:
        return cls(settings.action, CollapseRule(settings.ratio, settings.min_share, settings.patience))


def numeric(logs: dict[str, Any]) -> dict[str, float]:
    return {k: float(v) for k, v in logs.items() if isinstance(v, int | float) and math.isfinite(float(v))}


def metric_name(key: str) -> str:
    """TRL's log key as an MLflow metric name: ``rewards/format_reward/mean`` -> ``grpo/rewards/format_reward/mean``."""
    return "grpo/" + key


TIMINGS = ("step_time", "eval_runtime", "eval_samples_per_second", "eval_steps_per_second")


def history_rows(log_history: Sequence[dict[str, Any]], key: str) -> list[dict[str, Any]]:
    """The log entries holding ``key``, one per step (a resumed run may log a step twice:
    the later entry wins), without wall-clock timings (those are in MLflow)."""
    by_step: dict[int, dict[str, Any]] = {}
    for entry in log_history:
        if key in entry:
            row = {k: v for k, v in entry.items() if k not in TIMINGS and (isinstance(v, str) or k in numeric(entry))}
            by_step[int(entry["step"])] = row | {"step": int(entry["step"])}
    return [by_step[step] for step in sorted(by_step)]


def write_history(log_history: Sequence[dict[str, Any]], path: Path, key: str = "reward") -> int:
    """One CSV row per logged step that has ``key``: the reward curves (``reward``) or the
    validation curves (``eval_greedy_weighted_f1``), from TRL's ``log_history``."""
    rows = history_rows(log_history, key)
    columns = sorted({k for r in rows for k in r} - {"step"})
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=["step", *columns])
        writer.writeheader()
        writer.writerows(rows)
    return len(rows)


def latest_checkpoint(output_dir: Path) -> Path | None:
    checkpoints = [
        p
        for p in output_dir.glob(f"{CHECKPOINT_PREFIX}*")
        if p.is_dir() and p.name[len(CHECKPOINT_PREFIX) :].isdigit() and (p / "trainer_state.json").is_file()
    ]
    return max(checkpoints, key=lambda p: int(p.name[len(CHECKPOINT_PREFIX) :]), default=None)


def score_completions_only_on_cpu() -> bool:
    """Make TRL's fused LM head score only the completion tokens on CPU, as it does on GPUs.

    TRL 1.16 scores the tokens whose labels count (the completion) where its Triton kernels
    run (CUDA, XPU), and every position elsewhere, to keep tile shapes fixed for compilers.
    On CPU that sends every prompt token (about 300 for this task) through the whole
    vocabulary (152,064 words for Qwen2.5) in every forward and backward, for log-probs that
    are then masked away. The choice is one private name in ``trl.trainer.utils``; the
    kernels keep their own device check, so the CPU still runs TRL's CPU tiles. Returns
    whether the change is in place (False, with a warning, when TRL no longer has that name).
    """
    import trl.trainer.utils as trl_utils

    original = getattr(trl_utils, "_use_triton", None)
    if original is None:
        log.warning("TRL has no trainer.utils._use_triton: the CPU scores every position (slower, same result)")
        return False
    if getattr(original, "completions_only_on_cpu", False):
        return True

    def compact_scoring(device: Any) -> bool:
        return device.type == "cpu" or original(device)

    compact_scoring.completions_only_on_cpu = True  # type: ignore[attr-defined]
    trl_utils._use_triton = compact_scoring
    return True


class TrainingComplete(Exception):
    """The checkpoint resumed is the run's last: no step is left to train."""


class StopWhenComplete(TrainerCallback):
    """transformers checks ``max_steps`` only after a step: resumed from a run's last
    checkpoint (killed after saving it, before publishing), it would train one step past
    the end, and that step could be published. Stopped before training instead."""

    def on_train_begin(self, args, state, control, **kwargs):  # noqa: ANN001
        if state.max_steps and state.global_step >= state.max_steps:
            raise TrainingComplete(state.global_step)


def run_grpo(
    model_dir: Path,
    tokenizer: PreTrainedTokenizerFast,
    dataset: Dataset,
    config_kwargs: dict[str, Any],
    rewards: Sequence[Callable[..., list[float]]],
    completions_every: int,
    mlflow_run_id: str | None,
    validation: GreedyValidation,
    eval_dataset: Dataset,
    peft_config: Any = None,
) -> Any:
    """Train from ``model_dir``, evaluating on ``eval_dataset`` (TRL's sampled rewards) and
    with ``validation`` (greedy answers) every ``eval_steps``; resumes from the newest
    checkpoint in ``output_dir``."""
    from trl import GRPOConfig, GRPOTrainer

    score_completions_only_on_cpu()
    recorder = CompletionRecorder(validation.task)
    trainer = GRPOTrainer(
        model=str(model_dir),
        reward_funcs=[recorder.wrap(fn) for fn in rewards],
        args=GRPOConfig(**config_kwargs),
        train_dataset=dataset,
        eval_dataset=eval_dataset,
        processing_class=tokenizer,
        callbacks=[ProgressCallback(recorder, completions_every, mlflow_run_id), validation, StopWhenComplete()],
        peft_config=peft_config,
    )
    recorder.is_training = lambda: trainer.model.training  # TRL's own test for train vs eval batches
    validation.trainer = trainer
    resume = latest_checkpoint(Path(config_kwargs["output_dir"]))
    if resume:
        log.info("Resuming GRPO from %s", resume)
    try:
        trainer.train(resume_from_checkpoint=str(resume) if resume else None)
    except TrainingComplete as done:
        log.info("Checkpoint %s is the run's last (step %s): nothing left to train", resume, done)
        if trainer.args.load_best_model_at_end and trainer.state.best_model_checkpoint is not None:
            trainer._load_best_model()  # what train() does at its end, for publishing the best step
    return trainer


def selection_halves(rows: Sequence[Example], seed: int) -> dict[str, list[int]]:
    """Row indices of the select and check halves: stratified by label, rows that share an
    input on the same side (:func:`people_relation.split.stratified_holdout`)."""
    _, held = stratified_holdout(rows, 0.5, seed)
    chosen = {id(e) for e in held}
    return {
        "select": [i for i, e in enumerate(rows) if id(e) in chosen],
        "check": [i for i, e in enumerate(rows) if id(e) not in chosen],
    }


def selection(state: Any, publish: str, metric: str) -> dict[str, Any]:
    """Which step's model is published and why: the best evaluation by ``metric`` (on the
    select half) or the last step; with the check half's score of that step and of the start."""
    guard = next((e["collapse_guard"] for e in reversed(state.log_history) if "collapse_guard" in e), None)
    best_step = getattr(state, "best_global_step", None)
    published = best_step if publish == "best" and best_step else state.global_step
    check = metric.replace("_select_", "_check_")
    by_step = {e["step"]: e for e in state.log_history if check in e}
    return {
        "publish": publish,
        "metric": metric,
        "best_step": best_step,
        "best_value": state.best_metric,
        "published_step": published,
        "last_step": state.global_step,
        "check_metric": check,
        "check_value": by_step.get(published, {}).get(check),
        "check_start": by_step.get(0, {}).get(check),
        "collapse_guard": guard,
    }
