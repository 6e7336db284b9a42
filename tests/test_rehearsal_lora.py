"""The one-GPU profiles rehearsed on this CPU: ``qwen2.5-7b-lora`` (PEFT adapters in one
process, killed after its first checkpoint, resumed from the adapter, merged at publish and
served through vLLM) and ``qwen2.5-3b-lora`` (one 24 GB GPU) straight through. A module of
its own, so that it runs beside the 2-process rehearsal of ``test_rehearsal.py``."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from conftest import write_sandbox_params
from test_rehearsal import check_published_and_served, rehearse_killed_and_resumed


@pytest.mark.e2e
def test_the_one_gpu_lora_recipe_rehearsed_killed_resumed_and_merged(
    params, data_dir, published_split, prefect_api, tmp_path, project_root
):
    """``qwen2.5-7b-lora`` in one process: PEFT adapters on the profile's target modules; the
    checkpoint holds the adapter (not the model); killed, resumed from it; the adapter merged
    into a full model at publish, which vLLM serves like any other."""
    name = "qwen2.5-7b-lora"
    r = rehearse_killed_and_resumed(name, params, data_dir, published_split, prefect_api, tmp_path, project_root)
    assert {"adapter_model.safetensors", "adapter_config.json", "optimizer.pt"} <= r.checkpoint_files
    assert "model.safetensors" not in r.checkpoint_files  # the frozen base is not saved again
    assert [(s["step"], s["completions"], s["prompts"]) for s in r.summary["rollout"]] == [(1, 16, 2), (2, 16, 2)]
    assert "Process 0 of 1 done" in r.output
    check_published_and_served(r)
    final_model = r.root / "models" / name / "grpo"
    assert not (final_model / "adapter_config.json").exists()  # merged: a plain model


@pytest.mark.e2e
def test_the_24_gb_recipe_rehearsed(params, data_dir, published_split, prefect_api, tmp_path, project_root):
    """``qwen2.5-3b-lora`` straight through (its checkpoint and resume path is the LoRA
    profile's, rehearsed above): trained, merged, published, answered through vLLM."""
    import shutil

    base = tmp_path / "rehearsal"
    params_file = write_sandbox_params(
        params, tmp_path, data_dir, rehearsal__dir=str(base), **{"rehearsal__substitute__grpo.max_completion_length": 8}
    )
    shutil.copytree(published_split, tmp_path / "data" / "split")
    env = os.environ | {"PYTHONUNBUFFERED": "1", "PREFECT_API_URL": prefect_api}
    for inherited in ("MLFLOW_RUN_ID", "MLFLOW_TRACKING_URI"):
        env.pop(inherited, None)
    command = [
        sys.executable,
        "-m",
        "flows.rehearse",
        "--params-file",
        str(params_file),
        "--profile",
        "qwen2.5-3b-lora",
    ]
    result = subprocess.run(command, cwd=project_root, env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, (result.stdout + result.stderr)[-6000:]
    summary = json.loads((base / "qwen2.5-3b-lora" / "rehearsal.json").read_text())
    assert [(s["step"], s["completions"]) for s in summary["rollout"]] == [(1, 16), (2, 16)]
    assert summary["validation"]["rows"] == 16 and summary["published"]["last_step"] == 2
