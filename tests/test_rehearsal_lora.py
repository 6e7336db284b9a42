"""The one-GPU profiles rehearsed on this CPU: ``qwen2.5-7b-lora`` (PEFT adapters in one
process, killed after its first checkpoint, resumed from the adapter, merged at publish and
served through vLLM), which is also ``qwen2.5-3b-lora``'s (one 24 GB GPU) code path. A module
of its own, so that it runs beside the 2-process rehearsal of ``test_rehearsal.py``."""

from __future__ import annotations

import pytest
from test_rehearsal import check_published_and_served, rehearse_killed_and_resumed

from people_relation.settings import parse_settings
from people_relation.training.rehearsal import rehearsal_params


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


def test_the_24_gb_recipe_rehearses_on_the_lora_recipes_code_path(params, tmp_path):
    """``qwen2.5-3b-lora`` rehearsed would run what the test above runs: its rehearsed profile
    differs from ``qwen2.5-7b-lora``'s only in values no code on this CPU reads differently (the
    model both replace with the stand-in, vLLM's GPU share and sleep mode, which a rehearsal
    cannot exercise, what the evaluate step scores) and in the accumulation that keeps its
    batch. So the slow run above covers it; `make rehearse PROFILE=qwen2.5-3b-lora` runs it whole."""
    from test_rehearsal import flatten

    settings = parse_settings(params)
    rehearsed = {
        name: flatten(
            rehearsal_params(params, settings, tmp_path / name, tmp_path / "stand_in", name)["profiles"][name]
        )
        for name in ("qwen2.5-7b-lora", "qwen2.5-3b-lora")
    }
    small, large = rehearsed["qwen2.5-3b-lora"], rehearsed["qwen2.5-7b-lora"]
    differ = {k for k in small.keys() | large.keys() if small.get(k, "<absent>") != large.get(k, "<absent>")}
    assert differ <= {
        "base",
        "model.source",
        "vllm.gpu_memory_utilization",
        "serve.gpu_memory_utilization",
        "evaluate_models",
        "grpo.gradient_accumulation_steps",
    }, differ
    assert small["model.source"] == large["model.source"] == str(tmp_path / "stand_in")
    assert small["vllm.sleep_mode"] is None and small["grpo.vllm_mode"] == "off"  # as in the run above
