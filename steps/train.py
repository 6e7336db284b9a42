"""Tasks of the train stage: the scratch model, the supervised warm-up, the GRPO process (with
TRL's generation server when the profile uses one), validation, registration and charts."""

from __future__ import annotations

import json
import os
import shlex
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from prefect import get_run_logger, task

from people_relation.infra.data import read_examples
from people_relation.infra.io import PROJECT_ROOT, fingerprint, project_path, staged_dir
from people_relation.infra.paths import Arm, TrainPaths, split_file
from people_relation.infra.processes import stream
from people_relation.rewards import log_key, reward_order
from people_relation.serving.commands import serving_plan
from people_relation.settings import Model, Pretrain, Profile, Settings, Split, Warmup
from people_relation.task import Task
from people_relation.training.recipe import (
    batch_arithmetic,
    grpo_config_kwargs,
    launch_command,
    launch_env,
    vllm_server_command,
)

REWARD_CURVE_FILE = "reward_curve.png"
VALIDATION_CURVE_FILE = "validation_curve.png"
HEALTH_CURVE_FILE = "grpo_health.png"
# reward_history.csv column -> legend: what a healthy GRPO run shows falling or flat
HEALTH_CURVES = {
    "frac_reward_zero_std": "groups with no reward spread (no signal)",
    "answers/top_share": "most frequent sampled answer's share",
    "completion_length_100": "completion length / 100 tokens",
}
# validation_history.csv column -> legend; then the sampled rewards (validation_curves)
GREEDY_CURVES = {
    "eval_greedy_weighted_f1": "greedy weighted F1",
    "eval_greedy_accuracy": "greedy accuracy",
    "eval_greedy_top_share": "top answer's share",
    "eval_greedy_entropy": "answer entropy (normalised)",
}


def validation_curves(task: Task) -> dict[str, str]:
    """The validation chart's columns: the greedy scores, then each reward's sampled mean (the
    recorded one first)."""
    return GREEDY_CURVES | {log_key(n, "eval_"): f"sampled {n} reward" for n in reward_order(task)}


def reward_curves(task: Task) -> dict[str, str]:
    """The reward chart's columns: the total, then each of the task's rewards."""
    return {"reward": "total"} | {log_key(n): n for n in task.rewards}


# lines of the GRPO process that go to the run log (the rest is printed: progress bars, warnings)
GRPO_LOG_MARKERS = (" people_relation.training.grpo: ", " grpo: ", "Error")


def plan(arm: Arm, params_file: str) -> dict[str, Any]:
    """Everything a train run of ``arm`` would do, resolved, without doing it."""
    prof, paths, name = arm.profile, arm.paths, arm.name
    server = vllm_server_command(prof, str(paths.start_model))
    gpus = ",".join(str(g) for g in (prof.vllm.gpus or [])) if prof.vllm else ""
    return {
        "profile": name,
        "start_model": str(paths.start_model),
        "warmup": prof.warmup.enabled,
        "batch": batch_arithmetic(prof),
        "max_prompt_length": prof.grpo.max_prompt_length,  # checked, never cut (training.grpo)
        "grpo_config": grpo_config_kwargs(prof, arm.settings.task, str(paths.checkpoints)),
        "vllm_server_command": [f"CUDA_VISIBLE_DEVICES={gpus}", *server] if server else None,
        "train_command": [f"{k}={v}" for k, v in launch_env(prof).items()]
        + launch_command(prof, name, params_file, run=arm.settings.run),
        # over several machines: what `python -m flows.train --machine-rank K` starts on machine K
        "other_machines": {
            rank: launch_command(prof, name, params_file, machine_rank=rank, run=arm.settings.run)
            for rank in range(1, prof.launch.num_machines)
        },
        "final_model": str(paths.final_model),
        "validation": prof.validation.model_dump(exclude_unset=True),
        "register_model": prof.register_model,
        "serve_command": serving_plan(arm.settings, prof, paths.final_model),
    }


def check_trl_config(arm: Arm) -> None:
    """TRL's own checks of the run's ``GRPOConfig`` (a value it does not know, such as a
    ``loss_type`` it has no loss for), before any model is built or trained: a PermanentError
    naming the profile otherwise."""
    import tempfile

    from trl import GRPOConfig

    from people_relation.errors import PermanentError

    with tempfile.TemporaryDirectory() as out:
        try:
            GRPOConfig(**grpo_config_kwargs(arm.profile, arm.settings.task, out))
        except (TypeError, ValueError) as err:
            raise PermanentError(
                f"params.yaml: profiles.{arm.name}.grpo: TRL's GRPOConfig refuses the settings: {err}"
            ) from None


def preflight_report(arm: Arm, gpu_gib: float | None = None) -> tuple[str, bool]:
    """This machine checked for ``arm`` (GPUs, driver, model, ports, disk): the report, and
    whether every check passed. With ``gpu_gib``, only the GPU checks, on idle GPUs of that
    size in place of this machine's. Imports nothing of the GPU stack it checks."""
    from people_relation.training.preflight import assumed_gpus, gpu_checks, report, run_checks, trl_vllm_range

    if gpu_gib is not None:
        checks = gpu_checks(arm.profile, assumed_gpus(arm.profile, gpu_gib))
        return f"# {arm.name} on GPUs of {gpu_gib:g} GiB\n" + report(checks), all(c.ok for c in checks)
    checks = run_checks(arm, trl_vllm_range())
    return report(checks), all(c.ok for c in checks)


@task(name="build-scratch-model")
def build_scratch_model(task: Task, split: Split, model_settings: Model, out: Path) -> dict[str, Any]:
    """A character tokenizer of the training split and a randomly initialised small Qwen2."""
    from people_relation.training.models import build_scratch_qwen2, parameter_count, save_model
    from people_relation.training.tokenizer import build_tokenizer

    arch, seed = model_settings.arch, model_settings.seed
    assert arch is not None and seed is not None  # the settings check for source: scratch
    train = read_examples(split_file(split, "train"))
    tokenizer = build_tokenizer(task, [v for e in train for v in e.key])
    model = build_scratch_qwen2(tokenizer, arch, seed)
    with staged_dir(out) as staging:
        save_model(model, tokenizer, staging)
    info = {"parameters": parameter_count(model), "vocab_size": len(tokenizer)}
    get_run_logger().info(
        "Built a %d-parameter Qwen2 with a %d-token vocabulary in %s", info["parameters"], len(tokenizer), out
    )
    return info


@task(name="pretrained-model")
def take_pretrained_model(pretrain: Pretrain, out: Path) -> dict[str, Any]:
    """The ``pretrain`` stage's model and tokenizer, copied as this profile's base model."""
    import shutil

    from people_relation.errors import PermanentError
    from people_relation.training.models import load_causal_lm, parameter_count
    from people_relation.training.tokenizer import load_tokenizer

    source = project_path(pretrain.out_dir)
    if not (source / "config.json").is_file():
        raise PermanentError(
            f"{source} holds no pretrained model (model.source: pretrained); run the pretrain stage first: "
            "`dvc repro pretrain` (make pipeline runs it)"
        )
    with staged_dir(out) as staging:
        shutil.copytree(source, staging, dirs_exist_ok=True)
    info = {"parameters": parameter_count(load_causal_lm(out)), "vocab_size": len(load_tokenizer(out))}
    get_run_logger().info("Took the pretrained %d-parameter Qwen2 from %s", info["parameters"], source)
    return info


@task(name="warm-up")
def warm_up(task: Task, split: Split, warmup: Warmup, paths: TrainPaths, run_id: str) -> None:
    """Supervised warm-up of the base model (resumable from ``paths.warmup_state``)."""
    import mlflow
    import torch

    from people_relation.infra.io import claim_checkpoint_dir
    from people_relation.training.models import load_causal_lm, save_model
    from people_relation.training.tokenizer import load_tokenizer
    from people_relation.training.warmup import train_warmup

    train = read_examples(split_file(split, "train"))
    tokenizer = load_tokenizer(paths.base)
    model = load_causal_lm(paths.base)
    claim_checkpoint_dir(paths.warmup_state, fingerprint(warmup.model_dump(), paths.base, [e.id for e in train]))
    torch.manual_seed(warmup.seed)
    train_warmup(
        task,
        model,
        tokenizer,
        train,
        warmup,
        paths.warmup_state,
        on_log=lambda metrics, step: mlflow.log_metrics(metrics, step=step, run_id=run_id),
    )
    with staged_dir(paths.warmup) as staging:
        save_model(model, tokenizer, staging)


@contextmanager
def generation_server(settings: Settings, prof: Profile, model: str, log_path: Path) -> Iterator[None]:
    """TRL's vLLM server on its own GPU(s) for ``vllm_mode: server``; always stopped after
    (the same start, health wait and stop as the serving step, with ``serve``'s timeouts)."""
    command = vllm_server_command(prof, model, python=sys.executable)
    if command is None:
        yield
        return
    from people_relation.infra.processes import pick_port
    from people_relation.serving.server import vllm_server

    vllm = prof.vllm
    assert vllm is not None and vllm.host and vllm.port and vllm.group_port  # the settings check for server mode
    pick_port(vllm.host, vllm.port, "vllm.port")  # TRL's trainer connects to this fixed port: it must be ours
    pick_port(vllm.host, vllm.group_port, "vllm.group_port")
    with vllm_server(
        command,
        {"CUDA_VISIBLE_DEVICES": ",".join(str(g) for g in vllm.gpus or [])},
        vllm.host,
        vllm.port,
        model,
        log_path,
        settings.serve.startup_timeout_s,
        settings.serve.stop_timeout_s,
        cwd=PROJECT_ROOT,
    ):
        yield


@task(name="grpo", retries=0)
def grpo(arm: Arm, params_file: str, run_id: str, tracking_uri: str) -> None:
    """Run the GRPO process (plain, or under accelerate launch) and stream its log; over several
    machines, this machine's (rank 0) share of the processes."""
    logger = get_run_logger()

    def show(line: str) -> None:
        if any(marker in line for marker in GRPO_LOG_MARKERS):
            logger.info(line)
        else:
            print(line, flush=True)

    with generation_server(arm.settings, arm.profile, str(arm.paths.start_model), arm.paths.generation_log):
        launch_grpo(arm, params_file, {"MLFLOW_RUN_ID": run_id, "MLFLOW_TRACKING_URI": tracking_uri}, show, logger.info)


def train_machine(arm: Arm, params_file: str, machine_rank: int) -> None:
    """Machine ``machine_rank`` (1 or more) of a profile trained over several machines: its
    share of the GRPO processes, nothing else. Machine 0 runs the train step (``dvc repro``
    or ``python -m flows.train``), which also logs to MLflow, publishes and validates."""

    def show(line: str) -> None:
        print(line, flush=True)

    launch_grpo(arm, params_file, {}, show, show, machine_rank)


def launch_grpo(
    arm: Arm,
    params_file: str,
    env: dict[str, str],
    show: Callable[[str], None],
    announce: Callable[[str], None],
    machine_rank: int = 0,
) -> None:
    """Start this machine's GRPO processes with ``env`` added, stream their output to ``show``
    and raise when they fail."""
    from people_relation.infra.processes import die_with_parent

    prof = arm.profile
    command = launch_command(
        prof, arm.name, params_file, python=sys.executable, machine_rank=machine_rank, run=arm.settings.run
    )
    where = f" on machine {machine_rank} of {prof.launch.num_machines}" if prof.launch.num_machines > 1 else ""
    announce(f"Starting GRPO{where}: {shlex.join(command)}")
    env = (
        os.environ
        | {
            "PYTHONUNBUFFERED": "1",
            "PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW": "ignore",  # the training processes run no flow
        }
        | env
        | launch_env(prof)
    )
    # the launcher (and so its ranks) stops when this step dies
    finished = stream(command, show, cwd=PROJECT_ROOT, env=env, preexec_fn=die_with_parent)
    if finished.code != 0:
        raise RuntimeError(f"GRPO{where} exited with status {finished.code}; last lines:\n" + "\n".join(finished.tail))


@task(name="validate")
def validate(arm: Arm, phase: str) -> tuple[dict[str, float], list[str], list[dict]]:
    """Greedy scores of the ``phase`` model on the validation split, through the profile's
    ``validation.engine``: ``transformers`` (generate in this process: the CPU profile) or
    ``vllm`` (the model served as the profile's ``serve`` block says: the GPU profiles,
    whose reasoning runs up to ``max_new_tokens`` = 1024 tokens). Returns the scores, the
    completions and each row's answer (id, gold label, answer or None when invalid)."""
    from people_relation.metrics import scores

    prof, task = arm.profile, arm.settings.task
    val = prof.validation
    rows = read_examples(split_file(arm.settings.split, "validation"))
    if val.max_rows is not None:
        rows = rows[: val.max_rows]
    model = arm.model(phase)
    start = time.monotonic()
    if val.engine == "transformers":
        from people_relation.training.generation import generate_completions
        from people_relation.training.models import load_causal_lm, load_model_tokenizer

        completions = generate_completions(
            task,
            load_causal_lm(model),
            load_model_tokenizer(model, prof.model.tokenizer),
            rows,
            val.max_new_tokens,
            val.batch_size,
        )
    else:
        completions = served_completions(arm, phase, model, rows)
    parsed = [task.parse(c) for c in completions]
    answers = [p.label for p in parsed]
    result = scores(task.labels, [e.label for e in rows], answers)
    result |= {"format_ok_rate": sum(p.format_ok for p in parsed) / len(parsed), "rows": len(rows)}
    get_run_logger().info(
        "Validation of %s (%s, %.0f s): %s", phase, val.engine, time.monotonic() - start, json.dumps(result)
    )
    return (
        result,
        completions,
        [{"id": e.id, "label": e.label, "answer": a} for e, a in zip(rows, answers, strict=True)],
    )


def served_completions(arm: Arm, phase: str, model: Path, rows: list) -> list[str]:
    """Greedy completions of ``rows`` from the ``phase`` model behind vLLM's server (the
    serving step's server and client), in row order."""
    from people_relation.predictions import ordered, read_records
    from people_relation.serving.client import answer_rows
    from people_relation.serving.server import served_model

    settings, prof = arm.settings, arm.profile
    state = arm.paths.validation_state
    answers = state / f"{phase}.jsonl"
    answers.parent.mkdir(parents=True, exist_ok=True)
    answers.unlink(missing_ok=True)
    client = settings.evaluate.client(concurrency=prof.validation.batch_size)
    sampling = prof.serve.sampling(max_tokens=prof.validation.max_new_tokens)
    with served_model(settings.serve, prof, model, state / f"{phase}_server.log", arm.name) as server:
        answer_rows(
            settings.task, rows, server.base_url, server.api_key, server.model, sampling, client, answers, server.alive
        )
    return [r["completion"] for r in ordered(rows, read_records(answers)[0])]


@task(name="register-model")
def register(arm: Arm, model: Path, val: dict[str, float]) -> dict:
    """Log the GRPO model to the train run and register it as a new version; it takes the
    ``champion`` alias when its validation weighted F1 is the best of the versions."""
    from people_relation.infra.registry import CHAMPION, FINGERPRINT_TAG, crown_on_validation, registered_name
    from people_relation.serving.pyfunc import log_and_register

    settings, prof, name = arm.settings, arm.profile, arm.name
    registered = registered_name(settings.tracking, name, settings.own_run)
    info = log_and_register(
        settings.task,
        model,
        registered,
        prof.model.tokenizer,
        prof.validation.max_new_tokens,
        tags={"profile": name, FINGERPRINT_TAG: fingerprint(model)},
        metrics={f"val_{k}": v for k, v in val.items() if k in ("weighted_f1", "macro_f1", "accuracy")},
        max_chars=settings.query.max_chars,
    )
    version = str(info.registered_model_version)
    crowned = crown_on_validation(registered, version)
    get_run_logger().info(
        "Registered %s version %s (%s)%s",
        registered,
        version,
        info.model_uri,
        f"; the best validation weighted F1 so far: alias {CHAMPION}" if crowned else "",
    )
    return {"name": registered, "version": int(version), "champion": crowned}


@task(name="charts")
def draw_charts(
    task: Task,
    history: list[dict],
    curve: list[dict],
    name: str,
    out: Path,
    dpi: int,
    window: int,
    passes_per_step: float,
) -> list[Path]:
    """The reward curve (raw steps faint, a ``window``-step mean), the health of the groups
    (no-signal share, answer concentration, completion length) and the validation curve,
    each against steps and passes over the training rows."""
    from people_relation.infra.plots import line_chart

    line_chart(
        history,
        x="step",
        ys=reward_curves(task),
        title=f"GRPO rewards ({name})",
        path=out / REWARD_CURVE_FILE,
        dpi=dpi,
        smooth=window,
        passes_per_step=passes_per_step,
    )
    health = [
        r | {"completion_length_100": r["completions/mean_length"] / 100} if "completions/mean_length" in r else r
        for r in history
    ]
    line_chart(
        health,
        x="step",
        ys=HEALTH_CURVES,
        title=f"GRPO groups and completions ({name})",
        path=out / HEALTH_CURVE_FILE,
        dpi=dpi,
        smooth=window,
        passes_per_step=passes_per_step,
    )
    title = f"Validation during GRPO ({name}, {len(curve)} evaluations)"
    line_chart(
        curve,
        x="step",
        ys=validation_curves(task),
        title=title,
        path=out / VALIDATION_CURVE_FILE,
        dpi=dpi,
        passes_per_step=passes_per_step,
    )
    return [out / REWARD_CURVE_FILE, out / HEALTH_CURVE_FILE, out / VALIDATION_CURVE_FILE]
