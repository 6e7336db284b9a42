"""A second task through the same stages: the sentiment run of params.yaml (its task file and
nothing else of its own) prepared, split and scored by the baseline through `dvc repro`, its
outputs under its root, the relation run untouched."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from test_e2e import git, project_files

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def copy(tmp_path_factory, project_root) -> Path:
    root = tmp_path_factory.mktemp("runs") / "project"
    for name in project_files(project_root):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(project_root / name, root / name)
    subprocess.run(["git", "init", "-q"], cwd=root, check=True)
    git(root, "add", "-A")
    git(root, "commit", "-qm", "copy")
    return root


def test_the_sentiment_run_prepares_splits_and_scores_its_baseline_through_dvc(copy, prefect_api):
    env = os.environ | {"PREFECT_API_URL": prefect_api}
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env.pop("MLFLOW_TRACKING_URI", None)
    done = subprocess.run(
        ["dvc", "repro", "baseline@sentiment"], cwd=copy, env=env, capture_output=True, text=True, timeout=600
    )
    out = done.stdout + done.stderr
    assert done.returncode == 0, out[-4000:]
    # the clone lacks the cached data (prepare, split run); the baseline's inputs and git-tracked
    # outputs may match the committed lock, so DVC may skip it
    for stage in ("prepare@sentiment", "split@sentiment"):
        assert f"Running stage '{stage}'" in out, out[-3000:]
    assert "Running stage 'baseline@sentiment'" in out or "Stage 'baseline@sentiment' didn't change" in out
    assert "@relation" not in out and not (copy / "data" / "split").exists()  # the other run untouched

    root = copy / "runs" / "sentiment"
    lock = yaml.safe_load((copy / "dvc.lock").read_text(encoding="utf-8"))["stages"]
    assert {o["path"] for o in lock["split@sentiment"]["outs"]} >= {"runs/sentiment/data/split"}
    source = json.loads((root / "data" / "prepared" / "source.json").read_text(encoding="utf-8"))
    assert source["kind"] == "package" and source["version"] == "0.12.3" and source["rows"] == {"train": 17114}
    assert source["left_out_too_long"] == {"负面": 434, "正面": 194}
    rows = {s: len((root / "data" / "split" / f"{s}.jsonl").read_text(encoding="utf-8").splitlines()) for s in
            ("train", "validation", "test")}  # fmt: skip
    assert rows == {"train": 14632, "validation": 770, "test": 1712}
    first = json.loads((root / "data" / "split" / "test.jsonl").open(encoding="utf-8").readline())
    assert set(first) == {"id", "split", "line", "review", "label"} and first["label"] in ("负面", "正面")
    report = json.loads((root / "reports" / "split" / "split_report.json").read_text(encoding="utf-8"))
    assert report["labels"] == ["负面", "正面"] and "same_person_pairs" not in report  # no names in this task
    assert all(v["shared_keys"] == 0 for v in report["leakage"].values())
    metrics = json.loads((root / "reports" / "baseline" / "metrics.json").read_text(encoding="utf-8"))
    assert metrics["test"]["weighted_f1"] > 0.8, metrics
    assert json.loads((root / "reports" / "baseline" / "prior_metrics.json").read_text(encoding="utf-8")) == {
        "method": None
    }

    status = subprocess.run(["dvc", "status", "baseline@sentiment"], cwd=copy, env=env, capture_output=True, text=True)
    assert status.returncode == 0 and "up to date" in status.stdout, status.stdout
