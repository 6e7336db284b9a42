"""GRPO training process: ``python -m people_relation.training.grpo_process --profile NAME``.

The train flow starts this directly for one process, or under ``accelerate launch`` (with
DeepSpeed ZeRO-3) for several; the code is the same. It reads the start model from
``paths.start_model``, trains, and publishes the final model to ``paths.final_model``
only when training finished (a crash leaves the previous model, or none, in place).
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import sys
from pathlib import Path

from people_relation.infra.processes import die_with_parent
from people_relation.runtime import configure

if __name__ == "__main__":
    # First, before the heavy imports: a rank must not train on, orphaned, when its launcher
    # is killed (torch's launcher starts each rank in a session of its own).
    die_with_parent()
    if os.getppid() == 1:
        sys.exit("the launcher exited before this process started")
    configure()  # before TRL, MLflow and Hugging Face are imported

from people_relation.dataset import label_balanced  # noqa: E402
from people_relation.infra.data import read_examples  # noqa: E402
from people_relation.infra.io import (  # noqa: E402
    claim_checkpoint_dir,
    fingerprint,
    holds_claim,
    read_settings,
    replace_dir,
    write_json,
)
from people_relation.infra.paths import TrainPaths, resolve_arm, split_file  # noqa: E402
from people_relation.settings import Grpo, Model, Profile, Split  # noqa: E402
from people_relation.training.grpo import (  # noqa: E402
    GREEDY,
    GreedyValidation,
    Guard,
    prompt_dataset,
    run_grpo,
    selection,
    write_history,
)
from people_relation.training.models import load_model_tokenizer  # noqa: E402
from people_relation.training.recipe import grpo_config_kwargs  # noqa: E402

log = logging.getLogger("grpo")


def lora_config(model: Model):
    if model.lora is None:
        return None
    from peft import LoraConfig

    lora = model.lora
    return LoraConfig(
        r=lora.r,
        lora_alpha=int(lora.alpha),
        lora_dropout=lora.dropout,
        target_modules=list(lora.target_modules),
        task_type="CAUSAL_LM",
    )


def validation_rows(split: Split, grpo: Grpo) -> list:
    """The validation rows scored during GRPO: all, or a sample of ``grpo.eval_rows`` drawn
    with ``grpo.seed`` (the same rows at every evaluation and on every process)."""
    import random

    rows = read_examples(split_file(split, "validation"))
    if grpo.eval_rows is None or grpo.eval_rows >= len(rows):
        return rows
    picked = sorted(random.Random(grpo.seed).sample(range(len(rows)), grpo.eval_rows))
    return [rows[i] for i in picked]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params-file", default="params.yaml")
    parser.add_argument("--run", default=None)
    parser.add_argument("--profile", required=True)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", force=True)

    from datetime import timedelta

    from accelerate import PartialState

    arm = resolve_arm(read_settings(args.params_file, args.run), args.profile)
    settings, prof, paths = arm.settings, arm.profile, arm.paths
    g = prof.grpo
    # the process group accelerate launch set up (nothing for one process); created here, it
    # must get the run's timeout: the Trainer cannot change it afterwards. On CPU it must be
    # made as the Trainer makes it (``use_cpu``): the DeepSpeed path of accelerate's state
    # counts one process per rank there, and every rank would think it is the main one
    state = PartialState(cpu=g.use_cpu, timeout=timedelta(seconds=prof.launch.ddp_timeout_s))
    start_model = paths.start_model
    tokenizer = load_model_tokenizer(start_model, prof.model.tokenizer)
    task = settings.task
    train_rows = read_examples(split_file(settings.split, "train"))
    rewards, _ = task.reward_functions([e.label for e in train_rows])
    log.info("Rewards of task %s: %s", task.name, ", ".join(f"{n} x {w:g}" for n, w in task.rewards.items()))
    if g.prompt_sampling == "balanced":
        train_rows = label_balanced(train_rows, g.seed, task.labels)
    dataset, longest = prompt_dataset(task, tokenizer, train_rows, g.max_prompt_length)
    log.info("GRPO on %d prompts from %s (the longest is %d tokens)", len(dataset), start_model, longest)
    val_rows = validation_rows(settings.split, g)
    eval_dataset, _ = prompt_dataset(task, tokenizer, val_rows, g.max_prompt_length)
    kwargs = grpo_config_kwargs(prof, task, str(paths.checkpoints))
    run_key = fingerprint(kwargs, start_model, list(dataset["id"]), [e.id for e in val_rows])
    if state.is_main_process:  # one process decides what to keep; the others wait for it
        claim_checkpoint_dir(paths.checkpoints, run_key)
    state.wait_for_everyone()
    if not holds_claim(paths.checkpoints, run_key):
        raise RuntimeError(
            f"process {state.process_index} does not see the checkpoints folder the main process claimed, "
            f"{paths.checkpoints}: over several machines (launch.num_machines: {prof.launch.num_machines}) the "
            "project folder (train.checkpoints_dir and train.models_dir) must be on a filesystem every machine "
            "shares, at the same path; the checkpoints are saved and resumed there by every process"
        )
    run_id = os.environ.get("MLFLOW_RUN_ID")
    validation = GreedyValidation(
        task, val_rows, tokenizer, prof.validation, Guard.of(prof.collapse_guard), run_id, g.selection_seed
    )
    log.info("Validating every %d steps on %d validation rows", kwargs["eval_steps"], len(val_rows))
    trainer = run_grpo(
        start_model,
        tokenizer,
        dataset,
        kwargs,
        rewards,
        completions_every=g.completions_every,
        mlflow_run_id=run_id,
        validation=validation,
        eval_dataset=eval_dataset,
        peft_config=lora_config(prof.model),
    )
    publish(trainer, prof, tokenizer, paths)
    release(trainer)
    log.info("Process %d of %d done", state.process_index, state.num_processes)


def release(trainer) -> None:  # noqa: ANN001
    """Let go of what the run holds before the process ends: MLflow's tracker, DeepSpeed's
    engine (its ZeRO-3 hooks and its references to the process groups) and the validation's
    link back to the trainer, so that nothing keeps a process group alive once
    :func:`close_communication` destroys them."""
    for tracker in trainer.accelerator.trackers:
        tracker.finish()
    engine = getattr(trainer, "deepspeed", None)
    if engine is not None:
        engine.destroy()
    for callback in trainer.callback_handler.callbacks:
        if getattr(callback, "trainer", None) is trainer:
            callback.trainer = None


def close_communication() -> None:
    """Destroy every process group, DeepSpeed's references to them included, and collect them
    while the interpreter is whole, so gloo's worker and transport threads are joined by their
    owners' destructors here. Left to the interpreter's exit, they were torn down in no set
    order: a rank could end its finished run with ``terminate called without an active
    exception`` (SIGABRT) and fail the launcher after all the work was saved."""
    import gc
    import threading

    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        import deepspeed.comm as ds_dist

        if ds_dist.is_initialized():
            ds_dist.destroy_process_group()  # torch's groups and DeepSpeed's references to them
        else:
            dist.destroy_process_group()
    gc.collect()
    tasks = Path("/proc/self/task")
    native = len(list(tasks.iterdir())) if tasks.is_dir() else 0
    alive = [t.name for t in threading.enumerate() if t is not threading.main_thread()]
    log.info("Communication closed; %d native threads, Python threads besides the main: %s", native, alive or "none")


def publish(trainer, prof: Profile, tokenizer, paths: TrainPaths) -> None:  # noqa: ANN001
    """Save the trained model and publish it to ``paths.final_model`` in one rename.

    Every process takes part in the save: under DeepSpeed ZeRO-3 the weights are spread
    over all of them and gathering them is a collective. Only the main process writes.
    """
    accelerator = trainer.accelerator
    staging = paths.final_model.with_name(paths.final_model.name + ".partial")
    if prof.model.lora is not None:
        if accelerator.num_processes > 1:
            raise NotImplementedError("merging LoRA adapters is done in one process (launch.num_processes: 1)")
        # publish a full model (adapter merged), so vLLM serves it like any other
        merged = accelerator.unwrap_model(trainer.model).merge_and_unload()
        merged.save_pretrained(str(staging), safe_serialization=True)
    else:
        trainer.save_model(str(staging))
    if accelerator.is_main_process:
        # TRL's pickled arguments hold this machine's absolute paths; the resolved config is in MLflow
        (staging / "training_args.bin").unlink(missing_ok=True)
        if prof.model.tokenizer == "project":
            from people_relation.training.tokenizer import save_tokenizer

            save_tokenizer(tokenizer, staging)
        else:
            tokenizer.save_pretrained(staging)
        replace_dir(staging, paths.final_model)
        steps = write_history(trainer.state.log_history, paths.history)
        evaluations = write_history(trainer.state.log_history, paths.validation_history, key=GREEDY + "weighted_f1")
        chosen = selection(trainer.state, prof.grpo.publish, trainer.args.metric_for_best_model)
        write_json(paths.selection, chosen)
        log.info(
            "Saved the GRPO model of step %s (%s) to %s; %d logged steps to %s, %d evaluations to %s",
            chosen["published_step"],
            chosen["publish"],
            paths.final_model,
            steps,
            paths.history,
            evaluations,
            paths.validation_history,
        )
        # The run is complete and published: its checkpoints must not be resumed again.
        shutil.rmtree(paths.checkpoints, ignore_errors=True)
    accelerator.wait_for_everyone()


if __name__ == "__main__":
    main()
    close_communication()
