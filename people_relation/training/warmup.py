"""Supervised warm-up of the from-scratch model, before GRPO.

Teaches the format and gives the policy a useful prior: cross-entropy on the target
completion (rationale, answer, end of turn), plus a language-model loss on the prompt
(weight ``lm_weight``), which makes the model read the sentence and not only the labels.
Name-swap augmentation re-draws the names of a row (the task's mention fields) with
probability ``swap_prob``.

With ``random_labels`` the label slot of every target is drawn uniformly from the task's
labels, afresh for each row in each epoch: the model learns the language and the output
format but nothing about which label a row holds (the start of pure RL). With ``prior``
every target carries the answer of the task's rule-based prior (the relation task's keyword
rules, :mod:`people_relation.keywords`), read from the row's own sentence: the model learns
the language, the format and a prior from the words of the sentence, never the gold labels.

Checkpoints every epoch into ``checkpoint_dir``; started again after a crash, it resumes
from the last finished epoch.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import random
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from transformers import PreTrainedTokenizerFast

from people_relation.augment import mention_names, swap_names
from people_relation.dataset import Example
from people_relation.settings import Warmup
from people_relation.task import Task

log = logging.getLogger(__name__)


def encode(
    task: Task, tokenizer: PreTrainedTokenizerFast, example: Example, lm_weight: float, label_weight: float = 1.0
) -> tuple[list[int], list[float]]:
    """Token ids of prompt + target completion + end of turn, and each token's loss weight.

    The first label token of the completion (where the model decides; the answer tag
    repeats it) weighs ``label_weight``: it is one token among ~20 otherwise easy ones.
    """
    prompt = task.render_prompt(tokenizer, example.inputs)
    completion = task.target_completion(example.inputs, example.label)
    prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    completion_ids = tokenizer(completion, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    weights = [1.0] * len(completion_ids)
    label_id = tokenizer.convert_tokens_to_ids(example.label)
    if label_id in completion_ids:
        weights[completion_ids.index(label_id)] = label_weight
    return prompt_ids + completion_ids, [lm_weight] * len(prompt_ids) + weights


def collate(batch: Sequence[tuple[list[int], list[float]]], pad_id: int) -> dict[str, torch.Tensor]:
    width = max(len(ids) for ids, _ in batch)
    ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    weights = torch.zeros((len(batch), width))
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    for i, (row, w) in enumerate(batch):
        ids[i, : len(row)] = torch.tensor(row)
        weights[i, : len(w)] = torch.tensor(w)
        mask[i, : len(row)] = 1
    return {"input_ids": ids, "attention_mask": mask, "weights": weights}


def weighted_loss(logits: torch.Tensor, input_ids: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Next-token cross-entropy, each target token weighted; the first token is never a target."""
    targets = input_ids[:, 1:]
    w = weights[:, 1:]
    ce = F.cross_entropy(logits[:, :-1].float().reshape(-1, logits.size(-1)), targets.reshape(-1), reduction="none")
    return (ce * w.reshape(-1)).sum() / w.sum().clamp(min=1.0)


def length_bucketed_batches(
    examples: Sequence[Example], batch_size: int, rng: random.Random, bucket_batches: int = 16
) -> list[list[Example]]:
    """Shuffled batches of similar length of the first input field (less padding), in a shuffled order."""
    order = list(examples)
    rng.shuffle(order)
    span = batch_size * bucket_batches
    batches = []
    for start in range(0, len(order), span):
        chunk = sorted(order[start : start + span], key=lambda e: len(e.key[0]))
        batches.extend(chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size))
    rng.shuffle(batches)
    return batches


def epoch_rows(
    examples: Sequence[Example], none_label: str | None, unknown_keep: float, rng: random.Random
) -> list[Example]:
    """The rows of one epoch: every row whose target is not ``none_label``, and a ``unknown_keep``
    share of those whose target is (drawn with ``rng``)."""
    if unknown_keep >= 1.0 or none_label is None:
        return list(examples)
    unknown = [e for e in examples if e.label == none_label]
    kept = set(id(e) for e in rng.sample(unknown, round(len(unknown) * unknown_keep)))
    return [e for e in examples if e.label != none_label or id(e) in kept]


def cosine_with_warmup(step: int, total: int, warmup: int) -> float:
    if step < warmup:
        return (step + 1) / max(1, warmup)
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def train_warmup(
    task: Task,
    model: torch.nn.Module,
    tokenizer: PreTrainedTokenizerFast,
    examples: Sequence[Example],
    settings: Warmup,
    checkpoint_dir: Path,
    on_log: Callable[[dict[str, float], int], None] = lambda metrics, step: None,
) -> None:
    mentions = task.mentions
    names = mention_names(examples, mentions)
    if settings.labels == "prior":
        # from the original sentence, before any name swap (the swap keeps the words around the names)
        examples = [dataclasses.replace(e, label=task.prior_answer(e.inputs)) for e in examples]
    # the same number of rows every epoch (a fixed share of the none_label rows)
    rows_per_epoch = len(epoch_rows(examples, task.none_label, settings.unknown_keep, random.Random(0)))
    steps_per_epoch = math.ceil(rows_per_epoch / settings.batch_size)
    total = steps_per_epoch * settings.epochs
    optimizer = torch.optim.AdamW(model.parameters(), lr=settings.learning_rate, weight_decay=settings.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: cosine_with_warmup(s, total, int(settings.warmup_ratio * total))
    )
    first_epoch = 0
    state_file = checkpoint_dir / "warmup_state.pt"
    if state_file.is_file():
        state = torch.load(state_file, weights_only=False)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        first_epoch = state["epoch"] + 1
        log.info("Resuming the warm-up after epoch %d from %s", first_epoch, state_file)
    step = first_epoch * steps_per_epoch
    for epoch in range(first_epoch, settings.epochs):
        rng = random.Random(settings.seed * 1000 + epoch)
        rows_of_epoch = epoch_rows(examples, task.none_label, settings.unknown_keep, rng)
        batches = length_bucketed_batches(rows_of_epoch, settings.batch_size, rng)
        model.train()
        start, running = time.monotonic(), 0.0
        for b, rows in enumerate(batches):
            rows = [swap_names(e, mentions, names, rng) if rng.random() < settings.swap_prob else e for e in rows]
            if settings.random_labels:
                rows = [dataclasses.replace(e, label=rng.choice(task.labels)) for e in rows]
            batch = collate(
                [encode(task, tokenizer, e, settings.lm_weight, settings.label_weight) for e in rows],
                tokenizer.pad_token_id,
            )
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=settings.bf16):
                logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
            loss = weighted_loss(logits, batch["input_ids"], batch["weights"])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            scheduler.step()
            step += 1
            running += loss.item()
            if step % settings.log_every == 0 or b == steps_per_epoch - 1:
                metrics = {"warmup/loss": running / (b + 1), "warmup/lr": scheduler.get_last_lr()[0]}
                on_log(metrics, step)
                log.info(
                    "warm-up epoch %d/%d step %d/%d loss %.4f (%.0fs)",
                    epoch + 1,
                    settings.epochs,
                    step,
                    total,
                    metrics["warmup/loss"],
                    time.monotonic() - start,
                )
        checkpoint_dir.mkdir(parents=True, exist_ok=True)
        tmp = state_file.with_suffix(".tmp")
        torch.save(
            {
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "epoch": epoch,
            },
            tmp,
        )
        tmp.replace(state_file)
