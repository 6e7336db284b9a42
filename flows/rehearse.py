"""rehearse: a GPU profile's train step, run on this CPU before GPUs are booked.

    python -m flows.rehearse                # = make rehearse (rehearsal.profile: qwen2.5-7b)
    python -m flows.rehearse --profile qwen2.5-7b-lora   # = make rehearse PROFILE=qwen2.5-7b-lora
    python -m flows.rehearse --profile qwen2.5-7b-2x4    # 2 machines on the loopback address

Builds the stand-in model (a tiny Qwen2 with Qwen2.5's real tokenizer, see
``people_relation.training.rehearsal``), writes the rehearsal's params under
``rehearsal.dir/<profile>`` (the GPU profile with only device-level and budget values
substituted), runs the train flow on them (the
same flow ``dvc repro`` runs: ``accelerate launch`` on several processes under DeepSpeed
ZeRO-3, checkpoints, resume, the final save, publishing, validation through vLLM, MLflow),
and checks what actually ran: every optimizer step scored processes x prompts x
generations x accumulation completions, and every process finished. A profile over
several machines runs machine 0 as the train flow and starts each other machine's own
command beside it (``python -m flows.train --machine-rank K``), on 127.0.0.1 or, with
``rehearsal.machines.network: netns``, each other machine in a network namespace of its own. Run it
again after a crash and training resumes from the last checkpoint, as the real run would.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shlex
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml
from prefect import flow, get_run_logger

from flows.cli import run
from people_relation.infra.io import (
    PROJECT_ROOT,
    fingerprint,
    project_path,
    read_numeric_csv,
    read_project_params,
    write_json,
)
from people_relation.infra.netns import Host, hosts_on_a_bridge, loopback_hosts
from people_relation.infra.paths import resolve_arm
from people_relation.settings import parse_settings
from people_relation.training.recipe import batch_arithmetic
from people_relation.training.rehearsal import (
    Machines,
    StandIn,
    build_stand_in,
    rehearsal_params,
    rehearsal_settings,
)

STAND_IN = "stand_in"
MACHINE_END_S = 300  # how long the other machines may take to end once machine 0's train step is done
PARAMS = "params.yaml"
SUMMARY = "rehearsal.json"


class RehearsalFailed(RuntimeError):
    """The rehearsal ran, but did not do what the recipe says it would."""


def stand_in_model(arch: StandIn, root: Path) -> Path:
    """The stand-in model under ``root``, built again only when its settings changed."""
    directory = root / STAND_IN
    key = fingerprint(arch.model_dump())
    marker = root / f"{STAND_IN}.fingerprint"
    if not (directory / "config.json").is_file() or not marker.is_file() or marker.read_text().strip() != key:
        build_stand_in(directory, arch)
        marker.write_text(key + "\n")
    return directory


def rollout_per_step(history: Path) -> list[dict[str, float]]:
    """Step, completions and distinct prompts scored in each logged optimizer step."""
    with history.open(encoding="utf-8") as fh:
        return [
            {
                "step": int(float(row["step"])),
                "completions": float(row["rollout/completions"]),
                "prompts": float(row["rollout/prompts"]),
            }
            for row in csv.DictReader(fh)
        ]


def check_rollouts(steps: list[dict[str, float]], batch: dict[str, int], max_steps: int) -> None:
    """Every step scored exactly the planned completions and prompts, and every step ran."""
    if [s["step"] for s in steps] != list(range(1, max_steps + 1)):
        raise RehearsalFailed(f"logged steps {[s['step'] for s in steps]}, expected 1..{max_steps}")
    for s in steps:
        if (s["completions"], s["prompts"]) != (batch["completions_per_step"], batch["prompts_per_step"]):
            raise RehearsalFailed(
                f"step {s['step']} scored {s['completions']:.0f} completions of {s['prompts']:.0f} prompts; the "
                f"recipe's arithmetic says {batch['completions_per_step']} of {batch['prompts_per_step']}"
            )


@contextmanager
def machine_hosts(machines: Machines, count: int, logger: Any) -> Iterator[list[Host] | None]:
    """Where each of ``count`` machines runs: None for one machine; else on 127.0.0.1, or
    machine K in a network namespace of its own (``rehearsal.machines.network``)."""
    if count == 1:
        yield None
    elif machines.network == "loopback":
        yield loopback_hosts(count)
    else:
        with hosts_on_a_bridge(count, str(machines.subnet)) as hosts:
            logger.info(
                "Machines on bridge %s: %s",
                hosts[0].interface,
                ", ".join(f"{k} at {h.address} ({h.namespace or 'this host'})" for k, h in enumerate(hosts)),
            )
            yield hosts


def apart(hosts: list[Host] | None) -> bool:
    """Whether the machines run in network namespaces of their own (not all on 127.0.0.1)."""
    return bool(hosts) and any(h.namespace for h in hosts)


@contextmanager
def other_machines(name: str, hosts: list[Host] | None, root: Path, logger: Any) -> Iterator[None]:
    """Machines 1, 2, ... of a profile over several machines (``hosts``), beside the train flow
    (machine 0), each started in its host by the command its machine would run
    (``python -m flows.train --machine-rank K``) with its log in ``root/machine-K.log``. Each
    must end with status 0 soon after machine 0's training; when machine 0 fails they are
    stopped. Off the loopback address, each machine's gloo uses its own interface
    (``GLOO_SOCKET_IFNAME``), as on machines with several."""
    if hosts is None:
        yield
        return
    from people_relation.infra.processes import die_with_parent

    separate = apart(hosts)
    started = []
    for rank, host in enumerate(hosts[1:], start=1):
        log_path = root / f"machine-{rank}.log"
        argv = [sys.executable, "-m", "flows.train", "--params-file", str(root / PARAMS), "--machine-rank", str(rank)]
        command = host.command(argv)
        env = os.environ | ({"GLOO_SOCKET_IFNAME": host.interface} if separate else {})
        logger.info(
            "Machine %d of %d at %s: %s (log: %s)", rank, len(hosts), host.address, shlex.join(command), log_path
        )
        with log_path.open("w", encoding="utf-8") as log:
            proc = subprocess.Popen(
                command, cwd=PROJECT_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, preexec_fn=die_with_parent
            )
        started.append((rank, proc, log_path))
    before = os.environ.get("GLOO_SOCKET_IFNAME")
    if separate:
        os.environ["GLOO_SOCKET_IFNAME"] = hosts[0].interface  # machine 0: the train flow's processes
    try:
        yield
    except BaseException:
        for _, proc, _ in started:
            proc.terminate()
        for _, proc, _ in started:
            proc.wait(timeout=60)
        raise
    finally:
        if separate:
            os.environ.pop("GLOO_SOCKET_IFNAME")
            if before is not None:
                os.environ["GLOO_SOCKET_IFNAME"] = before
    for rank, proc, log_path in started:
        try:
            code = proc.wait(timeout=MACHINE_END_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            code = proc.wait()
        if code != 0:
            tail = "\n".join(log_path.read_text(encoding="utf-8", errors="replace").splitlines()[-30:])
            raise RehearsalFailed(f"machine {rank} of {name} ended with status {code} ({log_path}):\n{tail}")
        logger.info("Machine %d of %d done (%s)", rank, len(hosts), log_path)


@flow(name="rehearse", log_prints=True)
def rehearse_flow(params_file: str = "params.yaml", profile_name: str | None = None) -> dict[str, Any]:
    from flows.train import train_flow

    logger = get_run_logger()
    params = read_project_params(params_file)
    settings = parse_settings(params, params_file)
    rehearsal = rehearsal_settings(settings, params_file, profile_name)
    base = project_path(rehearsal.dir)
    root = base / rehearsal.profile  # one folder per profile; the stand-in is shared
    root.mkdir(parents=True, exist_ok=True)
    stand_in = stand_in_model(rehearsal.stand_in, base)
    machines = settings.profile(rehearsal.profile).launch.num_machines
    with machine_hosts(rehearsal.machines, machines, logger) as hosts:
        main_address = hosts[0].address if apart(hosts) else None  # else rehearsal.per_profile's
        rehearsed_params = rehearsal_params(params, settings, root, stand_in, rehearsal.profile, main_address)
        rehearsed = parse_settings(rehearsed_params, str(root / PARAMS))  # the substituted profile checked whole
        (root / PARAMS).write_text(
            yaml.safe_dump(rehearsed_params, allow_unicode=True, sort_keys=False), encoding="utf-8"
        )
        name = rehearsed.train.profile
        prof = rehearsed.profile(name)
        batch = batch_arithmetic(prof)
        logger.info(
            "Rehearsing %s: %d processes on %d machine(s), %d completions of %d prompts a step, params in %s",
            name,
            batch["num_processes"],
            prof.launch.num_machines,
            batch["completions_per_step"],
            batch["prompts_per_step"],
            root / PARAMS,
        )
        with other_machines(name, hosts, root, logger):
            results = train_flow(params_file=str(root / PARAMS))  # machine 0
    paths = resolve_arm(rehearsed, name).paths
    steps = rollout_per_step(paths.history)
    check_rollouts(steps, batch, prof.grpo.max_steps)
    evaluations = [int(r["step"]) for r in read_numeric_csv(paths.validation_history)]
    if evaluations[-1:] != [prof.grpo.max_steps]:
        raise RehearsalFailed(f"validation ran at steps {evaluations}; the last step was not validated")
    summary = {
        "profile": name,
        "batch": batch,
        "rollout": steps,
        "evaluations": evaluations,  # greedy validation during training, on every process
        "published": results["published"],  # the best checkpoint, loaded back under ZeRO-3
        "validation": results["grpo"],
        "model": str(paths.final_model),
    }
    write_json(root / SUMMARY, summary)
    logger.info("Rehearsal of %s passed: %s", name, json.dumps(summary, ensure_ascii=False))
    return summary


def _arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--profile", dest="profile_name", default=None, help="the GPU profile rehearsed (default: rehearsal.profile)"
    )


if __name__ == "__main__":
    run(rehearse_flow, add_arguments=_arguments)
