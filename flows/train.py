"""train: tokenizer and model (CPU profile), supervised warm-up, then GRPO with TRL.

One code path for every profile; only ``params.yaml`` differs:
  cpu            build a character tokenizer and a small Qwen2 from scratch, warm it up,
                 then GRPO in this machine's CPU, in one process.
  qwen2.5-7b     the published recipe: GRPO on Qwen2.5-7B-Instruct under
                 ``accelerate launch`` with DeepSpeed ZeRO-3, generation by TRL's vLLM server.

``--dry-run`` prints the profile resolved (its base laid out), each value after its
description, then the exact commands and the fully resolved GRPO config, and starts
nothing; ``--preflight`` checks this machine for the profile. Outputs: ``models/<profile>/``
(base, warmup, grpo), ``reports/train/<profile>/`` (metrics.json, reward_history.csv,
validation_history.csv, published_step.json and the two curves).

Over several machines (``launch.num_machines``), machine 0 runs this flow and machine K
runs ``python -m flows.train --machine-rank K``: its share of the GRPO processes, nothing else.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

from prefect import flow, get_run_logger

from flows.cli import run
from people_relation.infra.data import read_examples
from people_relation.infra.io import (
    fingerprint,
    read_json,
    read_numeric_csv,
    read_settings,
    write_json,
    write_jsonl,
)
from people_relation.infra.paths import resolve_arm, split_file
from people_relation.infra.tracking import flatten, mlflow_run, tracking_uri
from people_relation.monitor import reward_summary, validation_summary
from people_relation.rewards import reward_order
from people_relation.settings import PRETRAINED, SCRATCH, profile_yaml
from steps.train import (
    build_scratch_model,
    check_trl_config,
    draw_charts,
    grpo,
    plan,
    preflight_report,
    register,
    take_pretrained_model,
    train_machine,
    validate,
    warm_up,
)


def log_validation(phase: str, scores: dict[str, float], completions: list[str]) -> None:
    import mlflow

    mlflow.log_metrics({f"{phase}/val_{k}": v for k, v in scores.items()})
    mlflow.log_text("\n---\n".join(completions[:50]), f"train/{phase}_validation_samples.txt")


@flow(name="train", log_prints=True)
def train_flow(params_file: str = "params.yaml", run: str | None = None, profile_name: str | None = None) -> dict:
    import mlflow

    logger = get_run_logger()
    arm = resolve_arm(read_settings(params_file, run), profile_name)
    settings, name, prof, paths = arm.settings, arm.name, arm.profile, arm.paths
    check_trl_config(arm)  # TRL's own checks of the GRPO settings, before any work
    with mlflow_run(settings.tracking, name, "train", {"profile": name}) as active:
        mlflow.log_params(flatten(prof, f"{name}."))
        mlflow.log_dict(plan(arm, params_file), "train/plan.json")
        results: dict = {"profile": name}
        answers: dict[str, list[dict]] = {}  # phase -> each validation row's answer

        # 1. the start model: built here (CPU profile) and warmed up, or the hub model as it is
        if prof.model.source == SCRATCH:
            results["model"] = build_scratch_model(settings.task, settings.split, prof.model, paths.base)
        elif prof.model.source == PRETRAINED:
            results["model"] = take_pretrained_model(settings.pretrain, paths.base)
        if "model" in results:
            mlflow.log_params({f"model.{k}": v for k, v in results["model"].items()})
        if prof.warmup.enabled:
            warm_up(settings.task, settings.split, prof.warmup, paths, active.info.run_id)
            results["warmup"], completions, answers["warmup"] = validate(arm, "warmup")
            log_validation("warmup", results["warmup"], completions)

        # 2. GRPO, validated during training; the best (or last) checkpoint is published
        grpo(arm, params_file, active.info.run_id, tracking_uri(settings.tracking))
        results["grpo"], completions, answers["grpo"] = validate(arm, "grpo")
        log_validation("grpo", results["grpo"], completions)

        # 3. the model to the registry (or, too large to copy, the folder it is in)
        if prof.register_model:
            # the version lives in MLflow only: metrics.json is a DVC metrics file and must not
            # depend on the state of a tracking store
            register(arm, paths.final_model, results["grpo"])
        else:
            mlflow.set_tags({"model.dir": str(paths.final_model), "model.fingerprint": fingerprint(paths.final_model)})

        # 4. what happened during GRPO: reward and validation curves, the published step
        history = read_numeric_csv(paths.history)
        curve = read_numeric_csv(paths.validation_history)
        results["reward"] = reward_summary(history, settings.train.reward_window, reward_order(settings.task))
        results["validation_curve"] = validation_summary(curve)
        results["published"] = read_json(paths.selection)
        if guard := results["published"].get("collapse_guard"):
            mlflow.set_tag("collapse_guard", guard)
            logger.warning(guard)
        # passes over the training rows: how much of the data GRPO has seen (prompts / rows)
        train_rows = len(read_examples(split_file(settings.split, "train")))
        passes_per_step = plan(arm, params_file)["batch"]["prompts_per_step"] / train_rows
        results["passes_over_training_rows"] = passes_per_step * last_step(history)
        write_json(paths.metrics, results)
        write_validation_answers(paths.validation_answers, answers)
        charts = draw_charts(
            settings.task,
            history,
            curve,
            name,
            paths.reports,
            settings.reports.chart_dpi,
            settings.train.reward_window,
            passes_per_step,
        )
        for file in [
            *charts,
            paths.metrics,
            paths.history,
            paths.validation_history,
            paths.selection,
            paths.validation_answers,
        ]:
            mlflow.log_artifact(str(file), "train")
    logger.info("Train stage done: %s", json.dumps(results, ensure_ascii=False))
    return results


def last_step(history: list[dict]) -> int:
    return int(max((r["step"] for r in history), default=0))


def write_validation_answers(path: Path, answers: dict[str, list[dict]]) -> None:
    """One line per validation row: its id, gold label and each model's answer (null when
    invalid), for the report's intervals."""
    phases = list(answers)
    first = answers[phases[0]]
    write_jsonl(
        path,
        [
            {"id": row["id"], "label": row["label"]} | {phase: answers[phase][i]["answer"] for phase in phases}
            for i, row in enumerate(first)
        ],
    )


def _arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--profile", dest="profile_name", default=None, help="another profile than the run's (runs.<run>.profile)"
    )
    parser.add_argument(
        "--dry-run", action="store_true", help="print the profile resolved and described, and the plan; start nothing"
    )
    parser.add_argument(
        "--preflight", action="store_true", help="check this machine for the profile (GPUs, driver, model, ports, disk)"
    )
    parser.add_argument(
        "--machine-rank",
        type=int,
        default=None,
        metavar="K",
        help="on machine K (1 or more) of a profile over several machines (launch.num_machines): start this "
        "machine's GRPO processes only; machine 0 runs the train step itself",
    )
    parser.add_argument(
        "--gpu-gib",
        type=float,
        default=None,
        metavar="GIB",
        help="with --preflight: count the profile's memory on idle GPUs of GIB GiB, the total a card reports (a card "
        "sold as 24 GB reports about 22.4), instead of this machine's, and print the arithmetic (only the GPU checks)",
    )


def _instead(args: argparse.Namespace) -> bool:
    """``--dry-run``: print what a run would launch (no Prefect run, model or GPU package
    involved); ``--preflight``: check this machine for it, exit 1 when a check fails."""
    preflight, dry_run, gpu_gib, machine = (
        vars(args).pop(k) for k in ("preflight", "dry_run", "gpu_gib", "machine_rank")
    )
    if gpu_gib is not None and not preflight:
        raise SystemExit("error: --gpu-gib goes with --preflight")
    if not (preflight or dry_run or machine is not None):
        return False  # machine 0 (or one machine): the train step
    arm = resolve_arm(read_settings(args.params_file, args.run), args.profile_name)
    if machine is not None:  # checked whatever else is asked: a dry run shows only what can run
        machines = arm.profile.launch.num_machines
        if not 0 < machine < machines:
            raise SystemExit(
                f"error: --machine-rank {machine}: profile {arm.name} runs on {machines} machine(s) "
                f"(launch.num_machines), ranks 0 to {machines - 1}; machine 0 runs the train step without it"
            )
    if machine is not None and not (preflight or dry_run):
        train_machine(arm, args.params_file, machine)
        return True
    if preflight:
        text, passed = preflight_report(arm, gpu_gib)
        print(text)
        if not passed:
            sys.exit(1)
        return True
    the_plan = plan(arm, args.params_file)
    print(profile_yaml(arm.profile, arm.name, described=True))
    print("# plan")
    print(json.dumps(the_plan, indent=2, ensure_ascii=False))
    print("\n# launch")
    if the_plan["vllm_server_command"]:
        print(shlex.join(the_plan["vllm_server_command"]) + " &")
    print(shlex.join(the_plan["train_command"]))
    for rank, command in the_plan["other_machines"].items():
        print(f"# machine {rank}: python -m flows.train --profile {arm.name} --machine-rank {rank}, which starts")
        print(shlex.join(command))
    print("\n# serve the trained model (serve and evaluate steps)")
    print(shlex.join(the_plan["serve_command"]))
    return True


if __name__ == "__main__":
    run(train_flow, add_arguments=_arguments, instead=_instead)
