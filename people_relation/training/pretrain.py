"""Causal-LM pretraining of the CPU policy on the corpus (``people_relation/corpus.py``).

The corpus lines are tokenized with the policy's own character tokenizer (the relation
labels, format tags and prompt pieces are single tokens of it, so a label word met in the
corpus, 合作 or 同学, trains the very token the policy will answer with), joined into one
stream with ``<|endoftext|>`` after each line, and cut into blocks of ``block_size`` tokens.
Each pass visits every block once, in an order drawn from the seed and the pass.

The held-out lines are scored the same way every ``eval_every`` steps and at the end: the
mean next-token cross-entropy over all their tokens, and its exponential, the perplexity
(per token; a token is about a character).

Resumable: every ``save_every`` steps the model, optimizer, scheduler and step go to
``state_dir`` (written whole, then renamed); started again, it resumes from the last of them
with the same blocks in the same order, and the curve so far is in the state too.
"""

from __future__ import annotations

import logging
import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from transformers import PreTrainedTokenizerFast

from people_relation.settings import Pretrain
from people_relation.training.warmup import cosine_with_warmup

log = logging.getLogger(__name__)
STATE_FILE = "pretrain_state.pt"


def token_blocks(tokenizer: PreTrainedTokenizerFast, lines: Sequence[str], block_size: int) -> torch.Tensor:
    """The lines as one token stream (``<|endoftext|>`` after each), cut into full blocks:
    a ``(blocks, block_size)`` tensor; the last partial block is dropped."""
    separator = tokenizer.pad_token_id
    stream: list[int] = []
    for start in range(0, len(lines), 4096):
        for ids in tokenizer(list(lines[start : start + 4096]), add_special_tokens=False, verbose=False)["input_ids"]:
            stream.extend(ids)
            stream.append(separator)
    blocks = len(stream) // block_size
    if blocks == 0:
        raise ValueError(f"{len(stream)} tokens make no block of {block_size}; give more text or a smaller block_size")
    return torch.tensor(stream[: blocks * block_size], dtype=torch.long).view(blocks, block_size)


def block_order(blocks: int, passes: float, seed: int) -> list[int]:
    """Block indices in training order: ``passes`` passes (a fraction allowed), each a fresh
    seeded shuffle."""
    order: list[int] = []
    whole = math.ceil(passes)
    for p in range(whole):
        perm = list(range(blocks))
        random.Random(seed * 1000 + p).shuffle(perm)
        order.extend(perm)
    return order[: round(passes * blocks)]


@torch.no_grad()
def heldout_loss(model: torch.nn.Module, blocks: torch.Tensor, batch_size: int, bf16: bool) -> float:
    """Mean next-token cross-entropy (nats) over every position of ``blocks``."""
    model.eval()
    total, count = 0.0, 0
    for start in range(0, len(blocks), batch_size):
        batch = blocks[start : start + batch_size]
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            logits = model(input_ids=batch).logits
        ce = F.cross_entropy(
            logits[:, :-1].float().reshape(-1, logits.size(-1)), batch[:, 1:].reshape(-1), reduction="sum"
        )
        total += ce.item()
        count += batch[:, 1:].numel()
    model.train()
    return total / count


@dataclass
class PretrainResult:
    steps: int
    tokens_seen: int
    curve: list[dict[str, float]]  # step, passes, train_loss, heldout_loss, heldout_perplexity
    seconds: float  # of this process's share (a resumed run counts only its own)


def pretrain(
    model: torch.nn.Module,
    train_blocks: torch.Tensor,
    heldout_blocks: torch.Tensor,
    settings: Pretrain,
    state_dir: Path,
    on_log: Callable[[dict[str, float], int], None] = lambda metrics, step: None,
) -> PretrainResult:
    order = block_order(len(train_blocks), settings.passes, settings.seed)
    batches = [order[i : i + settings.batch_size] for i in range(0, len(order), settings.batch_size)]
    total = len(batches)
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=settings.learning_rate, weight_decay=settings.weight_decay, betas=(0.9, 0.95)
    )
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: cosine_with_warmup(s, total, int(settings.warmup_ratio * total))
    )
    step, curve, running = 0, [], []  # running: the training losses since the last held-out point
    state_file = state_dir / STATE_FILE
    if state_file.is_file():
        state = torch.load(state_file, weights_only=False)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        step, curve, running = state["step"], state["curve"], state["running"]
        log.info("Resuming pretraining at step %d of %d from %s", step, total, state_file)
    torch.manual_seed(settings.seed + step)
    model.train()
    start, seen = time.monotonic(), 0
    first = step
    while step < total:
        batch = train_blocks[batches[step]]
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=settings.bf16):
            logits = model(input_ids=batch).logits
        loss = F.cross_entropy(logits[:, :-1].float().reshape(-1, logits.size(-1)), batch[:, 1:].reshape(-1))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), settings.max_grad_norm)
        optimizer.step()
        scheduler.step()
        step += 1
        seen += batch.numel()
        running.append(loss.item())
        passes = min(step * settings.batch_size, len(order)) / len(train_blocks)
        if step % settings.eval_every == 0 or step == total:
            held = heldout_loss(model, heldout_blocks, settings.batch_size * 2, settings.bf16)
            point = {
                "step": step,
                "passes": round(passes, 4),
                "train_loss": sum(running) / len(running),
                "heldout_loss": held,
                "heldout_perplexity": math.exp(held),
            }
            curve.append(point)
            running = []
            on_log({k: v for k, v in point.items() if k != "step"}, step)
        if step % settings.log_every == 0 or step == total:
            elapsed = time.monotonic() - start
            rate = seen / elapsed if elapsed else 0.0
            eta = (total - step) * elapsed / (step - first)
            held = f", held-out perplexity {curve[-1]['heldout_perplexity']:.1f}" if curve else ""
            log.info(
                "pretraining step %d/%d (%.2f passes) loss %.3f%s; %.0f tokens/s, %.0f s left",
                step,
                total,
                passes,
                loss.item(),
                held,
                rate,
                eta,
            )
        if step % settings.save_every == 0 and step < total:
            save_state(state_dir, model, optimizer, scheduler, step, curve, running)
    return PretrainResult(step, seen, curve, time.monotonic() - start)


def save_state(state_dir: Path, model, optimizer, scheduler, step: int, curve: list, running: list) -> None:  # noqa: ANN001
    state_dir.mkdir(parents=True, exist_ok=True)
    tmp = state_dir / (STATE_FILE + ".tmp")
    torch.save(
        {
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "step": step,
            "curve": curve,
            "running": running,
        },
        tmp,
    )
    tmp.replace(state_dir / STATE_FILE)
    log.info("Saved the pretraining state at step %d to %s", step, state_dir / STATE_FILE)
