"""`dvc repro` on a copy of the project: runs, caches, skips what is current."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from conftest import shrink_cpu_profile

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def project_files(root: Path) -> list[str]:
    out = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=root,
        capture_output=True,
        text=True,
        check=True,
    )
    return [line for line in out.stdout.splitlines() if line and (root / line).is_file()]


@pytest.fixture
def project_copy(tmp_path, project_root, data_dir):
    copy = tmp_path / "project"
    for name in project_files(project_root):
        target = copy / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(project_root / name, target)
    params_file = copy / "params.yaml"
    params = yaml.safe_load(params_file.read_text(encoding="utf-8"))
    params["data"]["local_dir"] = str(data_dir)
    shrink_cpu_profile(params)
    params["profiles"]["cpu"]["grpo"]["max_steps"] = 2
    params["profiles"]["cpu"]["evaluate_models"] = ["grpo"]
    params["evaluate"]["max_rows"] = 24
    params_file.write_text(yaml.safe_dump(params, allow_unicode=True, sort_keys=False), encoding="utf-8")
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run(["git", "init", "-q"], cwd=copy, check=True)
    subprocess.run([*git, "add", "-A"], cwd=copy, check=True)
    subprocess.run([*git, "commit", "-qm", "copy"], cwd=copy, check=True)
    return copy


def dvc(copy: Path, *args: str, env: dict) -> tuple[str, float]:
    start = time.monotonic()
    result = subprocess.run(["dvc", *args], cwd=copy, env=env, capture_output=True, text=True, timeout=900)
    elapsed = time.monotonic() - start
    assert result.returncode == 0, f"dvc {' '.join(args)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result.stdout + result.stderr, elapsed


def test_repro_runs_then_skips_then_reruns_only_what_changed(project_copy, prefect_api):
    # the stages' `python` and `dvc` are this environment's, whatever PATH the tests got
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    env = os.environ | {"PREFECT_API_URL": prefect_api, "PATH": path}
    env.pop("MLFLOW_TRACKING_URI", None)

    out, _ = dvc(project_copy, "repro", env=env)
    assert "Running stage 'prepare'" in out and "Running stage 'split'" in out
    lock = yaml.safe_load((project_copy / "dvc.lock").read_text())
    assert set(lock["stages"]) == {"prepare", "split", "train", "baseline", "serve", "evaluate", "report"}
    assert (project_copy / "models/cpu/grpo/model.safetensors").is_file()
    metrics, _ = dvc(project_copy, "metrics", "show", "--json", env=env)
    shown = json.loads(metrics)[""]["data"]
    assert 0 <= shown["reports/metrics.json"]["data"]["grpo"]["weighted_f1"] <= 1  # test split, served
    assert shown["reports/metrics.json"]["data"]["rows"] == 24
    assert "weighted_f1" in shown["reports/train/cpu/metrics.json"]["data"]["grpo"]  # validation split
    comparison = (project_copy / "reports/comparison/comparison.md").read_text(encoding="utf-8")
    assert "88.84%" in comparison and "this run" in comparison and "measured here" in comparison
    assert sum(1 for _ in open(project_copy / "data/split/test.jsonl", encoding="utf-8")) == 776
    assert (project_copy / "mlflow.db").is_file()

    out, elapsed = dvc(project_copy, "repro", env=env)
    assert "Data and pipelines are up to date" in out
    assert elapsed < 30, f"a no-op repro took {elapsed:.1f}s"

    status, _ = dvc(project_copy, "status", env=env)
    assert "up to date" in status

    params_file = project_copy / "params.yaml"
    params = yaml.safe_load(params_file.read_text(encoding="utf-8"))
    params["split"]["seed"] = 7
    params_file.write_text(yaml.safe_dump(params, allow_unicode=True, sort_keys=False), encoding="utf-8")
    before = (project_copy / "data/split/validation.jsonl").read_text(encoding="utf-8")
    out, _ = dvc(project_copy, "repro", "train", env=env)  # up to train: serving is covered above
    assert "Stage 'prepare' didn't change, skipping" in out
    assert "Running stage 'split'" in out and "Running stage 'train'" in out
    assert (project_copy / "data/split/validation.jsonl").read_text(encoding="utf-8") != before

    # A GRPO-only change re-runs train alone, and the warm-up is not redone: its finished
    # state (fingerprinted by its settings and inputs) is reused.
    params["profiles"]["cpu"]["grpo"]["temperature"] = 0.8
    params_file.write_text(yaml.safe_dump(params, allow_unicode=True, sort_keys=False), encoding="utf-8")
    out, _ = dvc(project_copy, "repro", "train", env=env)
    assert "Stage 'split' didn't change, skipping" in out and "Running stage 'train'" in out
    assert "Resuming the warm-up after epoch 1" in out

    # Outputs are in DVC's cache: a deleted split comes back without re-running anything.
    shutil.rmtree(project_copy / "data/split")
    out, _ = dvc(project_copy, "checkout", env=env)
    assert (project_copy / "data/split/validation.jsonl").is_file()
