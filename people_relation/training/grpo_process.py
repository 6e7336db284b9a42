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

from people_relation.runtime import configure
from people_relation.serving.server import die_with_parent

if __name__ == "__main__":
    # First, before the heavy imports: a rank must not train on, orphaned, when its launcher
    # is killed (torch's launcher starts each rank in a session of its own).
    die_with_parent()
    if os.getppid() == 1:
        sys.exit("the launcher exited before this process started")
    configure()  # before TRL, MLflow and Hugging Face are imported

from people_relation.dataset import PROMPT_SAMPLING, label_balanced  # noqa: E402
from people_relation.infra.data import read_examples  # noqa: E402
from people_relation.infra.io import fingerprint, project_path, read_project_params, replace_dir, write_json  # noqa: E402
from people_relation.monitor import GUARD_ACTIONS, CollapseRule  # noqa: E402
from people_relation.params import get, get_float, get_int, get_str  # noqa: E402
from people_relation.paths import train_paths  # noqa: E402
from people_relation.recipe import grpo_config_kwargs, label_reward_kind, profile  # noqa: E402
from people_relation.rewards import balance_bonus, format_reward, label_reward, label_weights  # noqa: E402
from people_relation.training.grpo import (  # noqa: E402
    GREEDY,
    GreedySettings,
    GreedyValidation,
    Guard,
    claim_checkpoint_dir,
    prompt_dataset,
    run_grpo,
    selection,
    write_history,
)

log = logging.getLogger("grpo")


def load_processing_class(model_dir: Path, kind: str):
    if kind == "project":
        from people_relation.training.tokenizer import load_tokenizer

        return load_tokenizer(model_dir)
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(model_dir)


def lora_config(prof: dict):
    lora = get(prof, "model").get("lora")
    if not lora:
        return None
    from peft import LoraConfig

    return LoraConfig(
        r=int(lora["r"]),
        lora_alpha=int(lora["alpha"]),
        lora_dropout=float(lora["dropout"]),
        target_modules=list(lora["target_modules"]),
        task_type="CAUSAL_LM",
    )


def validation_rows(params: dict, prof: dict) -> list:
    """The validation rows scored during GRPO: all, or a sample of ``grpo.eval_rows`` drawn
    with ``grpo.seed`` (the same rows at every evaluation and on every process)."""
    import random

    rows = read_examples(project_path(get_str(params, "split.out_dir")) / "validation.jsonl")
    limit = get(prof, "grpo.eval_rows")
    if limit is None or int(limit) >= len(rows):
        return rows
    picked = sorted(random.Random(get_int(prof, "grpo.seed")).sample(range(len(rows)), int(limit)))
    return [rows[i] for i in picked]


def guard(prof: dict) -> Guard:
    g = get(prof, "collapse_guard")
    return Guard(
        action=get_str(g, "action", GUARD_ACTIONS),
        rule=CollapseRule(
            ratio=get_float(g, "ratio"), min_share=get_float(g, "min_share"), patience=get_int(g, "patience")
        ),
    )


def reward_functions(prof: dict, train_labels: list[str]) -> list:
    """The published format and label rewards, plus the rare-label bonus when
    ``grpo.label_reward`` is ``balanced`` (weights from the gold labels' shares in training)."""
    rewards = [format_reward, label_reward]
    if label_reward_kind(prof) == "balanced":
        weights = label_weights(train_labels)
        log.info("Balanced label reward: a right answer pays %s", {k: round(v, 2) for k, v in sorted(weights.items())})
        rewards.append(balance_bonus(weights))
    return rewards


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params-file", default="params.yaml")
    parser.add_argument("--profile", required=True)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", force=True)

    from datetime import timedelta

    from accelerate import PartialState

    params = read_project_params(args.params_file)
    prof = profile(params, args.profile)
    # the process group accelerate launch set up (nothing for one process); created here, it
    # must get the run's timeout: the Trainer cannot change it afterwards
    state = PartialState(timeout=timedelta(seconds=get_int(prof, "launch.ddp_timeout_s")))
    paths = train_paths(params, args.profile)
    start_model = paths["start_model"]
    tokenizer = load_processing_class(start_model, get_str(prof, "model.tokenizer"))
    train_rows = read_examples(project_path(get_str(params, "split.out_dir")) / "train.jsonl")
    rewards = reward_functions(prof, [e.label for e in train_rows])
    if get_str(prof, "grpo.prompt_sampling", PROMPT_SAMPLING) == "balanced":
        train_rows = label_balanced(train_rows, get_int(prof, "grpo.seed"))
    dataset, longest = prompt_dataset(tokenizer, train_rows, get_int(prof, "grpo.max_prompt_length"))
    log.info("GRPO on %d prompts from %s (the longest is %d tokens)", len(dataset), start_model, longest)
    val_rows = validation_rows(params, prof)
    eval_dataset, _ = prompt_dataset(tokenizer, val_rows, get_int(prof, "grpo.max_prompt_length"))
    kwargs = grpo_config_kwargs(prof, str(paths["checkpoints"]))
    if state.is_main_process:  # one process decides what to keep; the others wait for it
        claim_checkpoint_dir(
            paths["checkpoints"], fingerprint(kwargs, start_model, list(dataset["id"]), [e.id for e in val_rows])
        )
    state.wait_for_everyone()
    run_id = os.environ.get("MLFLOW_RUN_ID")
    validation = GreedyValidation(
        val_rows,
        tokenizer,
        GreedySettings(get_int(prof, "validation.max_new_tokens"), get_int(prof, "validation.batch_size")),
        guard(prof),
        run_id,
    )
    log.info("Validating every %d steps on %d validation rows", kwargs["eval_steps"], len(val_rows))
    trainer = run_grpo(
        start_model,
        tokenizer,
        dataset,
        kwargs,
        rewards,
        completions_every=get_int(prof, "grpo.completions_every"),
        mlflow_run_id=run_id,
        validation=validation,
        eval_dataset=eval_dataset,
        peft_config=lora_config(prof),
    )
    publish(trainer, prof, tokenizer, paths)
    log.info("Process %d of %d done", state.process_index, state.num_processes)


def publish(trainer, prof: dict, tokenizer, paths: dict[str, Path]) -> None:  # noqa: ANN001
    """Save the trained model and publish it to ``paths.final_model`` in one rename.

    Every process takes part in the save: under DeepSpeed ZeRO-3 the weights are spread
    over all of them and gathering them is a collective. Only the main process writes.
    """
    accelerator = trainer.accelerator
    staging = paths["final_model"].with_name(paths["final_model"].name + ".partial")
    if lora_config(prof) is not None:
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
        if get_str(prof, "model.tokenizer") == "project":
            from people_relation.training.tokenizer import save_tokenizer

            save_tokenizer(tokenizer, staging)
        else:
            tokenizer.save_pretrained(staging)
        replace_dir(staging, paths["final_model"])
        steps = write_history(trainer.state.log_history, paths["history"])
        evaluations = write_history(trainer.state.log_history, paths["validation_history"], key=GREEDY + "weighted_f1")
        chosen = selection(trainer.state, get_str(prof, "grpo.publish"), trainer.args.metric_for_best_model)
        write_json(paths["selection"], chosen)
        log.info(
            "Saved the GRPO model of step %s (%s) to %s; %d logged steps to %s, %d evaluations to %s",
            chosen["published_step"],
            chosen["publish"],
            paths["final_model"],
            steps,
            paths["history"],
            evaluations,
            paths["validation_history"],
        )
        # The run is complete and published: its checkpoints must not be resumed again.
        shutil.rmtree(paths["checkpoints"], ignore_errors=True)
    accelerator.wait_for_everyone()
    accelerator.end_training()


if __name__ == "__main__":
    sys.exit(main())
