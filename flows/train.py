"""train: tokenizer and model (CPU profile), supervised warm-up, then GRPO with TRL.

One code path for every profile; only ``params.yaml`` differs:
  cpu            build a character tokenizer and a small Qwen2 from scratch, warm it up,
                 then GRPO in this machine's CPU, in one process.
  qwen2.5-7b     the published recipe: GRPO on Qwen2.5-7B-Instruct under
                 ``accelerate launch`` with DeepSpeed ZeRO-3, generation by TRL's vLLM server.

``--dry-run`` prints the exact commands and the fully resolved GRPO config, and starts
nothing. Outputs: ``models/<profile>/`` (base, warmup, grpo), ``reports/train/<profile>/``
(metrics.json, reward_history.csv, reward_curve.png).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shlex
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task

from flows.cli import run
from people_relation.infra.io import (
    PROJECT_ROOT,
    project_path,
    read_json,
    read_numeric_csv,
    read_project_params,
    staged_dir,
    write_json,
)
from people_relation.infra.tracking import tracking_uri
from people_relation.params import get, get_int, get_str
from people_relation.paths import train_paths
from people_relation.recipe import (
    batch_arithmetic,
    default_profile,
    grpo_config_kwargs,
    launch_command,
    profile,
    vllm_server_command,
)

GRPO_ENTRY = (
    "people_relation.training.grpo_process"  # the training process, started by `python -m` or `accelerate launch`
)
CURVE_FILE = "reward_curve.png"
VALIDATION_CURVE_FILE = "validation_curve.png"
# validation_history.csv column -> legend
VALIDATION_CURVES = {
    "eval_greedy_weighted_f1": "greedy weighted F1",
    "eval_greedy_accuracy": "greedy accuracy",
    "eval_greedy_top_share": "top answer's share",
    "eval_greedy_entropy": "answer entropy (normalised)",
    "eval_rewards/label_reward/mean": "sampled label reward",
    "eval_rewards/format_reward/mean": "sampled format reward",
}


def plan(params: dict[str, Any], name: str, params_file: str) -> dict[str, Any]:
    """Everything a run of profile ``name`` would do, resolved, without doing it."""
    prof = profile(params, name)
    paths = train_paths(params, name)
    command = launch_command(prof, name, params_file, GRPO_ENTRY)
    server = vllm_server_command(prof, str(paths["start_model"]))
    server_env = [f"CUDA_VISIBLE_DEVICES={','.join(str(g) for g in get(prof, 'vllm')['gpus'])}"] if server else []
    return {
        "profile": name,
        "start_model": str(paths["start_model"]),
        "warmup": bool(prof.get("warmup", {}).get("enabled")),
        "batch": batch_arithmetic(prof),
        "max_prompt_length": get_int(
            prof, "grpo.max_prompt_length"
        ),  # checked, never cut (people_relation.training.grpo)
        "grpo_config": grpo_config_kwargs(prof, str(paths["checkpoints"])),
        "vllm_server_command": server_env + server if server else None,
        "train_command": command,
        "final_model": str(paths["final_model"]),
        "validation": dict(get(prof, "validation")),
        "register_model": bool(get(prof, "register_model")),
        "serve_command": serving_plan(params, name, prof, paths["final_model"]),
    }


def serving_plan(params: dict[str, Any], name: str, prof: dict[str, Any], model: Path) -> list[str] | None:
    """The environment and command that ``serve``/``evaluate`` would use on the trained model."""
    from people_relation.paths import tokenizer_dir
    from people_relation.serving.commands import serve_command, serve_env

    serve = prof.get("serve")
    if not serve:
        return None
    port = get_int(params, "serve.port") or "<free port>"
    tok = tokenizer_dir(params, name, model)
    command = serve_command(
        serve,
        str(model),
        str(tok) if tok else None,
        get_str(params, "serve.host"),
        port,
        get_str(params, "serve.served_model_name"),
    )
    env = serve_env(serve, get_str(params, "serve.cache_dir"), api_key=None)
    return [
        f"{k}={v}" for k, v in sorted(env.items()) if k in ("CUDA_VISIBLE_DEVICES", "VLLM_CPU_KVCACHE_SPACE")
    ] + command


def reward_summary(history: list[dict[str, float]], window: int) -> dict[str, float | None]:
    """First and last logged rewards, and their means over ``window`` steps (single steps are noisy)."""

    def mean(rows: list[dict[str, float]], key: str) -> float | None:
        values = [r[key] for r in rows if key in r]
        return sum(values) / len(values) if values else None

    summary: dict[str, float | None] = {
        "first": history[0].get("reward") if history else None,
        "last": history[-1].get("reward") if history else None,
    }
    for key, short in (
        ("reward", "reward"),
        ("rewards/label_reward/mean", "label"),
        ("rewards/format_reward/mean", "format"),
    ):
        summary[f"{short}_first_{window}_mean"] = mean(history[:window], key)
        summary[f"{short}_last_{window}_mean"] = mean(history[-window:], key)
    return summary


def validation_summary(curve: list[dict[str, float]]) -> dict[str, Any]:
    """Greedy weighted F1 at the first (start model), best and last evaluation during GRPO."""
    key = "eval_greedy_weighted_f1"
    points = [r for r in curve if key in r]
    if not points:
        return {"evaluations": 0}
    best = max(points, key=lambda r: r[key])
    return {
        "evaluations": len(points),
        "first_step": int(points[0]["step"]),
        "first_weighted_f1": points[0][key],
        "best_step": int(best["step"]),
        "best_weighted_f1": best[key],
        "last_step": int(points[-1]["step"]),
        "last_weighted_f1": points[-1][key],
    }


@task(name="build-scratch-model")
def build_scratch_model(params: dict[str, Any], prof: dict[str, Any], out: Path) -> dict[str, Any]:
    from people_relation.infra.data import read_examples
    from people_relation.training.models import build_model, parameter_count, save_model
    from people_relation.training.tokenizer import build_tokenizer

    logger = get_run_logger()
    train = read_examples(project_path(get_str(params, "split.out_dir")) / "train.jsonl")
    tokenizer = build_tokenizer([t for e in train for t in (e.text, e.people1, e.people2)])
    model = build_model(tokenizer, get(prof, "model.arch"), get_int(prof, "model.seed"))
    with staged_dir(out) as staging:
        save_model(model, tokenizer, staging)
    info = {"parameters": parameter_count(model), "vocab_size": len(tokenizer)}
    logger.info("Built a %d-parameter Qwen2 with a %d-token vocabulary in %s", info["parameters"], len(tokenizer), out)
    return info


@task(name="warm-up")
def warm_up(params: dict[str, Any], prof: dict[str, Any], paths: dict[str, Path], run_id: str) -> None:
    import mlflow
    import torch

    from people_relation.infra.data import read_examples
    from people_relation.infra.io import fingerprint
    from people_relation.training.grpo import claim_checkpoint_dir
    from people_relation.training.models import load_model, save_model
    from people_relation.training.tokenizer import load_tokenizer
    from people_relation.training.warmup import WarmupSettings, train_warmup

    w = get(prof, "warmup")
    settings = WarmupSettings(
        epochs=get_int(w, "epochs"),
        batch_size=get_int(w, "batch_size"),
        learning_rate=float(get(w, "learning_rate")),
        weight_decay=float(get(w, "weight_decay")),
        warmup_ratio=float(get(w, "warmup_ratio")),
        lm_weight=float(get(w, "lm_weight")),
        label_weight=float(get(w, "label_weight")),
        swap_prob=float(get(w, "swap_prob")),
        seed=get_int(w, "seed"),
        bf16=bool(get(w, "bf16")),
        log_every=get_int(w, "log_every"),
        random_labels=get_str(w, "labels", WARMUP_LABELS) == "random",
    )
    train = read_examples(project_path(get_str(params, "split.out_dir")) / "train.jsonl")
    tokenizer = load_tokenizer(paths["base"])
    model = load_model(paths["base"])
    claim_checkpoint_dir(paths["warmup_state"], fingerprint(settings.__dict__, paths["base"], [e.id for e in train]))
    torch.manual_seed(settings.seed)
    train_warmup(
        model,
        tokenizer,
        train,
        settings,
        paths["warmup_state"],
        on_log=lambda metrics, step: mlflow.log_metrics(metrics, step=step, run_id=run_id),
    )
    with staged_dir(paths["warmup"]) as staging:
        save_model(model, tokenizer, staging)


@contextmanager
def generation_server(params: dict[str, Any], prof: dict[str, Any], model: str, log_path: Path) -> Iterator[None]:
    """TRL's vLLM server on its own GPU(s) for ``vllm_mode: server``; always stopped after
    (the same start, health wait and stop as the serving step, with ``serve``'s timeouts)."""
    command = vllm_server_command(prof, model, python=sys.executable)
    if command is None:
        yield
        return
    from people_relation.params import get_float
    from people_relation.serving.server import pick_port, vllm_server

    vllm = get(prof, "vllm")
    host, port = get_str(prof, "vllm.host"), get_int(prof, "vllm.port")
    pick_port(host, port, "vllm.port")  # TRL's trainer connects to this fixed port: it must be ours
    pick_port(host, get_int(prof, "vllm.group_port"), "vllm.group_port")
    with vllm_server(
        command,
        {"CUDA_VISIBLE_DEVICES": ",".join(str(g) for g in vllm["gpus"])},
        host,
        port,
        model,
        log_path,
        get_float(params, "serve.startup_timeout_s"),
        get_float(params, "serve.stop_timeout_s"),
        cwd=PROJECT_ROOT,
    ):
        yield


@task(name="grpo", retries=0)
def grpo(
    params: dict[str, Any], params_file: str, name: str, prof: dict[str, Any], run_id: str, uri: str, start_model: str
) -> None:
    """Run the GRPO process (plain, or under accelerate launch) and stream its log."""
    from people_relation.serving.server import die_with_parent

    logger = get_run_logger()
    command = launch_command(prof, name, params_file, GRPO_ENTRY, python=sys.executable)
    logger.info("Starting GRPO: %s", shlex.join(command))
    env = os.environ | {
        "MLFLOW_RUN_ID": run_id,
        "MLFLOW_TRACKING_URI": uri,
        "PYTHONUNBUFFERED": "1",
        "PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW": "ignore",  # the training processes run no flow
    }
    with (
        generation_server(params, prof, start_model, train_paths(params, name)["generation_log"]),
        subprocess.Popen(
            command,
            cwd=PROJECT_ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            preexec_fn=die_with_parent,  # the launcher (and so its ranks) stops when this step dies
        ) as proc,
    ):
        tail: list[str] = []
        assert proc.stdout is not None
        for line in proc.stdout:
            line = line.rstrip()
            tail = (tail + [line])[-40:]
            if " people_relation.training.grpo: " in line or " grpo: " in line or "Error" in line:
                logger.info(line)
            else:
                print(line, flush=True)
        code = proc.wait()
    if code != 0:
        raise RuntimeError(f"GRPO exited with status {code}; last lines:\n" + "\n".join(tail))


VALIDATION_ENGINES = ("transformers", "vllm")
WARMUP_LABELS = ("gold", "random")


@task(name="validate")
def validate(params: dict[str, Any], name: str, stage: str, tokenizer_kind: str) -> tuple[dict[str, float], list[str]]:
    """Greedy scores of the ``stage`` model on the validation split, through the profile's
    ``validation.engine``: ``transformers`` (generate in this process: the CPU profile) or
    ``vllm`` (the model served as the profile's ``serve`` block says: the GPU profiles,
    whose reasoning runs up to ``max_new_tokens`` = 1024 tokens)."""
    from people_relation.infra.data import read_examples
    from people_relation.metrics import scores
    from people_relation.parsing import parse_completion
    from people_relation.paths import model_dir

    prof = profile(params, name)
    rows = read_examples(project_path(get_str(params, "split.out_dir")) / "validation.jsonl")
    if (limit := get(prof, "validation.max_rows")) is not None:
        rows = rows[: int(limit)]
    engine = get_str(prof, "validation.engine", VALIDATION_ENGINES)
    max_new_tokens = get_int(prof, "validation.max_new_tokens")
    start = time.monotonic()
    if engine == "transformers":
        from people_relation.training.generation import generate_completions
        from people_relation.training.grpo_process import load_processing_class
        from people_relation.training.models import load_model

        directory = model_dir(params, name, stage)
        completions = generate_completions(
            load_model(directory),
            load_processing_class(directory, tokenizer_kind),
            rows,
            max_new_tokens,
            get_int(prof, "validation.batch_size"),
        )
    else:
        completions = served_completions(params, name, stage, rows, max_new_tokens)
    parsed = [parse_completion(c) for c in completions]
    result = scores([e.label for e in rows], [p.answer if p.format_ok else None for p in parsed])
    result |= {"format_ok_rate": sum(p.format_ok for p in parsed) / len(parsed), "rows": len(rows)}
    get_run_logger().info(
        "Validation of %s (%s, %.0f s): %s", stage, engine, time.monotonic() - start, json.dumps(result)
    )
    return result, completions


def served_completions(params: dict[str, Any], name: str, stage: str, rows: list, max_new_tokens: int) -> list[str]:
    """Greedy completions of ``rows`` from the ``stage`` model behind vLLM's server (the
    serving step's server and client), in row order."""
    from flows.serve import client_settings
    from people_relation.predictions import ordered, read_records
    from people_relation.serving.client import Sampling, answer_rows
    from people_relation.serving.server import served_model

    paths = train_paths(params, name)
    answers = paths["validation_state"] / f"{stage}.jsonl"
    answers.parent.mkdir(parents=True, exist_ok=True)
    answers.unlink(missing_ok=True)
    prof = profile(params, name)
    settings = dataclasses.replace(client_settings(params), concurrency=get_int(prof, "validation.batch_size"))
    sampling = Sampling(max_tokens=max_new_tokens, temperature=0.0, seed=get_int(prof, "serve.seed"))
    with served_model(params, name, stage, paths["validation_state"] / f"{stage}_server.log") as server:
        answer_rows(rows, server.base_url, server.api_key, server.model, sampling, settings, answers, server.alive)
    return [r["completion"] for r in ordered(rows, read_records(answers)[0])]


@task(name="register-model")
def register(params: dict[str, Any], name: str, model: Path, tokenizer_kind: str, val: dict[str, float]) -> dict:
    """Log the GRPO model to the train run and register it as a new version."""
    from people_relation.infra.io import fingerprint
    from people_relation.infra.registry import FINGERPRINT_TAG, log_and_register, registered_name

    registered = registered_name(params, name)
    info = log_and_register(
        model,
        registered,
        tokenizer_kind,
        get_int(profile(params, name), "validation.max_new_tokens"),
        tags={"profile": name, FINGERPRINT_TAG: fingerprint(model)},
        metrics={f"val_{k}": v for k, v in val.items() if k in ("weighted_f1", "macro_f1", "accuracy")},
    )
    get_run_logger().info("Registered %s version %s (%s)", registered, info.registered_model_version, info.model_uri)
    return {"name": registered, "version": int(info.registered_model_version)}


@flow(name="train", log_prints=True)
def train_flow(params_file: str = "params.yaml", profile_name: str | None = None) -> dict:
    import mlflow

    from people_relation.infra.plots import line_chart
    from people_relation.infra.tracking import flatten, mlflow_run

    logger = get_run_logger()
    params = read_project_params(params_file)
    name = profile_name or default_profile(params)
    the_plan = plan(params, name, params_file)
    prof = profile(params, name)
    paths = train_paths(params, name)
    tokenizer_kind = get_str(prof, "model.tokenizer")
    with mlflow_run(params, "train", {"profile": name}) as active:
        run_id = active.info.run_id
        mlflow.log_params(flatten(prof, f"{name}."))
        mlflow.log_dict(the_plan, "train/plan.json")
        results: dict[str, Any] = {"profile": name}
        if get_str(prof, "model.source") == "scratch":
            results["model"] = build_scratch_model(params, prof, paths["base"])
            mlflow.log_params({f"model.{k}": v for k, v in results["model"].items()})
        if the_plan["warmup"]:
            warm_up(params, prof, paths, run_id)
            results["warmup"], completions = validate(params, name, "warmup", tokenizer_kind)
            mlflow.log_metrics({f"warmup/val_{k}": v for k, v in results["warmup"].items()})
            mlflow.log_text("\n---\n".join(completions[:50]), "train/warmup_validation_samples.txt")
        grpo(params, params_file, name, prof, run_id, tracking_uri(params), str(paths["start_model"]))
        results["grpo"], completions = validate(params, name, "grpo", tokenizer_kind)
        mlflow.log_metrics({f"grpo/val_{k}": v for k, v in results["grpo"].items()})
        mlflow.log_text("\n---\n".join(completions[:50]), "train/grpo_validation_samples.txt")
        if get(prof, "register_model"):
            # the version lives in MLflow only: metrics.json is a DVC metrics file and must not
            # depend on the state of a tracking store
            register(params, name, paths["final_model"], tokenizer_kind, results["grpo"])
        else:
            # too large to copy into MLflow: the run says which folder (a DVC output) it made
            from people_relation.infra.io import fingerprint

            final = paths["final_model"]
            mlflow.set_tags({"model.dir": str(final), "model.fingerprint": fingerprint(final)})

        history = read_numeric_csv(paths["history"])
        results["reward"] = reward_summary(history, get_int(params, "train.reward_window"))
        curve = read_numeric_csv(paths["validation_history"])
        results["validation_curve"] = validation_summary(curve)
        results["published"] = read_json(paths["selection"])
        if guard := results["published"].get("collapse_guard"):
            mlflow.set_tag("collapse_guard", guard)
            logger.warning(guard)
        write_json(paths["metrics"], results)
        dpi = get_int(params, "reports.chart_dpi")
        line_chart(
            history,
            x="step",
            ys={"reward": "total", "rewards/format_reward/mean": "format", "rewards/label_reward/mean": "label"},
            title=f"GRPO rewards ({name})",
            path=paths["reports"] / CURVE_FILE,
            dpi=dpi,
            smooth=get_int(params, "train.reward_window"),
        )
        line_chart(
            curve,
            x="step",
            ys=VALIDATION_CURVES,
            title=f"Validation during GRPO ({name}, {len(curve)} evaluations)",
            path=paths["reports"] / VALIDATION_CURVE_FILE,
            dpi=dpi,
        )
        for file in (CURVE_FILE, VALIDATION_CURVE_FILE):
            mlflow.log_artifact(str(paths["reports"] / file), "train")
        for file in ("metrics", "history", "validation_history", "selection"):
            mlflow.log_artifact(str(paths[file]), "train")
    logger.info("Train step done: %s", json.dumps(results, ensure_ascii=False))
    return results


def _arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--profile", dest="profile_name", default=None, help="override train.profile")
    parser.add_argument("--dry-run", action="store_true", help="print the resolved plan; start nothing")
    parser.add_argument(
        "--preflight", action="store_true", help="check this machine for the profile (GPUs, driver, model, ports, disk)"
    )


def _preflight(args: argparse.Namespace) -> None:
    """Print every check for the profile on this machine; exit 1 when one fails."""
    from people_relation.training.preflight import report, run_checks, trl_vllm_range

    params = read_project_params(args.params_file)
    checks = run_checks(params, args.profile_name or default_profile(params), trl_vllm_range())
    print(report(checks))
    if not all(c.ok for c in checks):
        sys.exit(1)


def _dry_run(args: argparse.Namespace) -> bool:
    """Print what a run would launch, with no Prefect run, model or GPU package involved;
    or, with ``--preflight``, check this machine for it."""
    if vars(args).pop("preflight"):
        vars(args).pop("dry_run")
        _preflight(args)
        return True
    if not vars(args).pop("dry_run"):
        return False
    params = read_project_params(args.params_file)
    the_plan = plan(params, args.profile_name or default_profile(params), args.params_file)
    print(json.dumps(the_plan, indent=2, ensure_ascii=False))
    print("\n# launch")
    if the_plan["vllm_server_command"]:
        print(shlex.join(the_plan["vllm_server_command"]) + " &")
    print(shlex.join(the_plan["train_command"]))
    if the_plan["serve_command"]:
        print("\n# serve the trained model (serve and evaluate steps)")
        print(shlex.join(the_plan["serve_command"]))
    return True


if __name__ == "__main__":
    run(train_flow, add_arguments=_arguments, instead=_dry_run)
