"""GRPO on the smallest configuration, in one process, killed and resumed.

The whole train flow (tokenizer, model, warm-up, GRPO, MLflow tracking, registration) runs
inside the end-to-end `dvc repro` of tests/test_e2e.py; the GPU recipe's path (accelerate
launch on 2 processes with DeepSpeed ZeRO-3) in tests/test_rehearsal.py.
"""

from __future__ import annotations

import csv
import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest
from conftest import shrink_cpu_profile, write_sandbox_params

from people_relation.infra.paths import train_paths
from people_relation.params import load_params
from people_relation.settings import Warmup, parse_settings

pytestmark = pytest.mark.integration


def grpo_command(params_file) -> list[str]:
    """The CPU profile's GRPO process, as the train flow starts it."""
    from people_relation.training.recipe import GRPO_PROCESS

    return [sys.executable, "-m", GRPO_PROCESS, "--params-file", str(params_file), "--profile", "cpu"]


def tiny_params(params, root, data_dir, **overrides):
    import copy

    p = copy.deepcopy(params)
    shrink_cpu_profile(p)
    return write_sandbox_params(p, root, data_dir, **overrides)


@pytest.fixture(scope="module")
def split_sandbox(tmp_path_factory, published_split):
    """The published split in a sandbox, shared by this module's tests."""
    import shutil

    root = tmp_path_factory.mktemp("train")
    shutil.copytree(published_split, root / "data" / "split")
    return root


def test_grpo_killed_mid_run_resumes_from_its_last_checkpoint(
    split_sandbox, tiny_model, params, data_dir, project_root
):
    """A real kill: SIGKILL after the first checkpoint, then a restart that finishes the run."""
    root, params_file, p, paths = _base_model_only(
        split_sandbox, tiny_model, params, data_dir, "resume", max_steps=6, save_steps=2
    )

    command = grpo_command(params_file)
    env = os.environ | {"PYTHONUNBUFFERED": "1"}
    env.pop("MLFLOW_RUN_ID", None)
    log1 = open(root / "first.log", "w")
    first = subprocess.Popen(command, cwd=project_root, env=env, stdout=log1, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 300
    while not (paths.checkpoints / "checkpoint-2" / "trainer_state.json").is_file():
        assert first.poll() is None, (root / "first.log").read_text()[-3000:]
        assert time.monotonic() < deadline, "no checkpoint within 5 minutes"
        time.sleep(0.5)
    time.sleep(1.0)
    first.send_signal(signal.SIGKILL)
    first.wait()
    log1.close()
    assert first.returncode == -signal.SIGKILL
    assert not paths.final_model.exists(), "a killed run must not publish a model"

    second = subprocess.run(command, cwd=project_root, env=env, capture_output=True, text=True, timeout=600)
    output = second.stdout + second.stderr
    assert second.returncode == 0, output[-3000:]
    resumed = re.search(r"Resuming GRPO from \S*checkpoint-(\d+)", output)
    assert resumed, output[-3000:]
    assert int(resumed.group(1)) >= 2
    assert "GRPO step 6/6" in output
    assert not paths.checkpoints.exists(), "a finished run's checkpoints are removed once it is published"
    with paths.history.open(encoding="utf-8") as fh:
        steps = [int(float(r["step"])) for r in csv.DictReader(fh)]
    assert steps == list(range(1, 7))  # every step once: the resumed run kept the earlier history
    with paths.validation_history.open(encoding="utf-8") as fh:
        evaluated = [int(r["step"]) for r in csv.DictReader(fh)]
    assert evaluated == [0, 2, 4, 6]  # validated every eval_steps across the kill, each step once
    published = json.loads(paths.selection.read_text())
    assert published["last_step"] == 6 and published["published_step"] in (2, 4, 6)
    assert (paths.final_model / "model.safetensors").is_file()


def _base_model_only(split_sandbox, tiny_model, params, data_dir, name, **grpo):
    """A sandbox whose GRPO starts from the session's untrained tiny model (no warm-up)."""
    import shutil

    import yaml

    root = split_sandbox / name
    root.mkdir()
    params_file = tiny_params(
        params,
        root,
        data_dir,
        split__out_dir=str(split_sandbox / "data" / "split"),
        profiles__cpu__warmup__enabled=False,
    )
    p = load_params(params_file)
    p["profiles"]["cpu"]["grpo"] |= grpo
    params_file.write_text(yaml.safe_dump(p, allow_unicode=True), encoding="utf-8")
    paths = train_paths(parse_settings(p), "cpu")
    shutil.copytree(tiny_model, paths.base)
    return root, params_file, p, paths


def test_collapse_guard_stops_a_collapsing_run_and_publishes_its_best_checkpoint(
    split_sandbox, tiny_model, params, data_dir, project_root, task
):
    """A collapsed policy is stopped. The tiny model, warmed up for 2 epochs, answers the
    majority label 不知道 to most validation rows (measured: 56 of 64, the rest unparsed);
    GRPO at 100x the profile's learning rate keeps it there. The guard (a label over twice
    its gold share and over half the answers, in 2 evaluations of the trained policy in a
    row) stops GRPO, says which label and when, publishes the best checkpoint and marks
    the MLflow run."""
    import mlflow
    import yaml

    from people_relation.infra.data import read_examples
    from people_relation.training.models import load_causal_lm, save_model
    from people_relation.training.tokenizer import load_tokenizer
    from people_relation.training.warmup import train_warmup

    root, params_file, p, paths = _base_model_only(
        split_sandbox, tiny_model, params, data_dir, "collapse", learning_rate=1e-3, beta=0.0, max_steps=8, save_steps=2
    )
    p["profiles"]["cpu"]["collapse_guard"] |= {"action": "stop", "ratio": 2.0, "min_share": 0.5, "patience": 2}
    params_file.write_text(yaml.safe_dump(p, allow_unicode=True), encoding="utf-8")
    model, tokenizer = load_causal_lm(paths.base), load_tokenizer(paths.base)
    settings = Warmup(
        enabled=True,
        epochs=2,
        batch_size=32,
        learning_rate=5e-3,
        weight_decay=0.01,
        warmup_ratio=0.05,
        lm_weight=0.3,
        label_weight=1.0,
        swap_prob=0.5,
        seed=0,
        bf16=True,
        log_every=1000,
        labels="gold",
    )
    rows = read_examples(split_sandbox / "data/split/train.jsonl")
    train_warmup(task, model, tokenizer, rows, settings, root / "warm")
    save_model(model, tokenizer, paths.base)
    uri = f"sqlite:///{root / 'mlflow.db'}"
    client = mlflow.MlflowClient(tracking_uri=uri)
    experiment = client.create_experiment("collapse", artifact_location=(root / "mlartifacts").as_uri())
    run_id = client.create_run(experiment).info.run_id

    command = grpo_command(params_file)
    env = os.environ | {"PYTHONUNBUFFERED": "1", "MLFLOW_RUN_ID": run_id, "MLFLOW_TRACKING_URI": uri}
    result = subprocess.run(command, cwd=project_root, env=env, capture_output=True, text=True, timeout=600)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    published = json.loads(paths.selection.read_text())
    message = published["collapse_guard"]
    assert message, output[-4000:]
    stopped = int(re.search(r"up to step (\d+)", message).group(1))
    label = re.search(r"the greedy answer '([^']+)'", message).group(1)
    assert stopped < 8 and published["last_step"] == stopped, published
    with paths.validation_history.open(encoding="utf-8") as fh:
        evaluations = list(csv.DictReader(fh))
    over = [r["eval_greedy_over_limit"] for r in evaluations if int(r["step"]) > 0]
    assert over[-2:] == [label, label]  # the last two evaluations of the trained policy
    assert float(evaluations[-1]["eval_greedy_top_share"]) > 0.5
    # the best evaluation on the select half is what was published; the check half reports it
    best = max(evaluations[1:], key=lambda r: float(r["eval_greedy_select_weighted_f1"]))
    assert published["published_step"] == int(best["step"])
    assert published["metric"] == "eval_greedy_select_weighted_f1"
    assert published["check_value"] == pytest.approx(float(best["eval_greedy_check_weighted_f1"]))
    assert published["check_start"] == pytest.approx(float(evaluations[0]["eval_greedy_check_weighted_f1"]))
    assert (paths.final_model / "model.safetensors").is_file()
    assert client.get_run(run_id).data.tags["collapse_guard"] == message
