"""End to end on a fresh copy of the project, smallest CPU settings, through every door:
`dvc repro` (tracked in MLflow: a parent run, a nested run per step, the model registered),
the DVC remote, offline plots, the Prefect deployment through a real worker, and
`dvc exp run -S`. DVC and Prefect must agree: after either, the other finds nothing to do.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from conftest import shrink_cpu_profile, shrink_pretraining

from people_relation.comparison import method_name
from people_relation.settings import load_settings

pytestmark = pytest.mark.e2e

# the relation run's stages (this copy has only that run: tests/test_runs.py runs another's) and the shared ones
PER_RUN = ("prepare", "split", "profile", "train", "baseline", "serve", "evaluate", "report")
STAGES = {"corpus", "pretrain"} | {f"{s}@relation" for s in PER_RUN}
PROFILE = yaml.safe_load((Path(__file__).parents[1] / "params.yaml").read_text(encoding="utf-8"))["runs"]["relation"][
    "profile"
]
POOL = "people-relation-cpu"  # the work pool of the `cpu` deployment in prefect.yaml


def project_files(root: Path) -> list[str]:
    out = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=root,
        capture_output=True,
        text=True,
        check=True,
    )
    return [line for line in out.stdout.splitlines() if line and (root / line).is_file()]


def git(copy: Path, *args: str) -> None:
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=copy, check=True)


@pytest.fixture(scope="module")
def project(tmp_path_factory, project_root, data_dir) -> Path:
    """The project's files (what a clone holds) in a new git repository, smallest settings."""
    copy = tmp_path_factory.mktemp("e2e") / "project"
    for name in project_files(project_root):
        target = copy / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(project_root / name, target)
    params_file = copy / "params.yaml"
    params = yaml.safe_load(params_file.read_text(encoding="utf-8"))
    params["data"]["local_dir"] = str(data_dir)
    params["runs"] = {"relation": params["runs"]["relation"]}
    shrink_cpu_profile(params, PROFILE)  # the pipeline's own profile, as a clone's `dvc repro` trains it
    shrink_pretraining(params)
    params["profiles"][PROFILE]["grpo"]["max_steps"] = 2
    params["profiles"][PROFILE]["evaluate_models"] = ["grpo"]
    params["evaluate"]["max_rows"] = 24
    params["serve"]["cache_dir"] = str(project_root / ".cache" / "vllm")  # shared with the other tests
    params_file.write_text(yaml.safe_dump(params, allow_unicode=True, sort_keys=False), encoding="utf-8")
    subprocess.run(["git", "init", "-q"], cwd=copy, check=True)
    git(copy, "add", "-A")
    git(copy, "commit", "-qm", "copy")
    return copy


@pytest.fixture(scope="module")
def env(prefect_api) -> dict[str, str]:
    # the stages' `python`, `dvc` and `prefect` are this environment's, whatever PATH the tests got
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    env = os.environ | {"PREFECT_API_URL": prefect_api, "PATH": path}
    env.pop("MLFLOW_TRACKING_URI", None)
    return env


def run(copy: Path, *args: str, env: dict, timeout: float = 900) -> tuple[str, float]:
    start = time.monotonic()
    result = subprocess.run(list(args), cwd=copy, env=env, capture_output=True, text=True, timeout=timeout)
    elapsed = time.monotonic() - start
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"{' '.join(args)} failed:\n{output[-4000:]}"
    return output, elapsed


def dvc(copy: Path, *args: str, env: dict) -> str:
    return run(copy, "dvc", *args, env=env)[0]


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def repro(project, env) -> str:
    """The first `dvc repro`: every stage runs."""
    return run(project, "dvc", "repro", env=env, timeout=1200)[0]


def mlflow_client(copy: Path):
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=f"sqlite:///{copy / 'mlflow.db'}")


def runs(copy: Path) -> list:
    client = mlflow_client(copy)
    experiment = client.get_experiment_by_name("people-relation-grpo")
    return client.search_runs([experiment.experiment_id], max_results=1000)


def steps_under(copy: Path, parent_id: str) -> set[str]:
    return {r.data.tags["pipeline.step"] for r in runs(copy) if r.data.tags.get("mlflow.parentRunId") == parent_id}


def test_dvc_repro_runs_every_stage_and_mlflow_records_it(project, env, repro):
    # Every stage whose params changed (smallest settings) or whose cached outputs a clone
    # lacks runs; the baseline's inputs and git-tracked outputs match dvc.lock, so DVC may skip it.
    ran = {s for s in STAGES if f"Running stage '{s}'" in repro}
    skipped = {s for s in STAGES if f"Stage '{s}' didn't change, skipping" in repro}
    assert ran | skipped == STAGES and not ran & skipped
    assert ran >= STAGES - {"baseline@relation"}, repro[-3000:]
    lock = yaml.safe_load((project / "dvc.lock").read_text())
    assert STAGES <= set(lock["stages"])  # the committed lock also holds the sentiment run's entries
    assert (project / f"models/{PROFILE}/grpo/model.safetensors").is_file()
    shown = json.loads(dvc(project, "metrics", "show", "--json", env=env))[""]["data"]
    assert 0 <= shown[f"reports/metrics/{PROFILE}.json"]["data"]["grpo"]["weighted_f1"] <= 1  # test split, served
    assert shown[f"reports/metrics/{PROFILE}.json"]["data"]["rows"] == 24
    published = shown[f"reports/train/{PROFILE}/published_step.json"]["data"]
    assert published["publish"] == "best" and published["published_step"] in (1, 2)
    assert "weighted_f1" in shown[f"reports/train/{PROFILE}/metrics.json"]["data"]["grpo"]  # validation split
    assert shown["reports/baseline/metrics.json"]["data"]["test"]["weighted_f1"] > 0.5
    comparison = (project / "reports/comparison/comparison.md").read_text(encoding="utf-8")
    assert "88.84%" in comparison and "this project" in comparison and "measured here" in comparison
    labels = load_settings(project / "params.yaml").profile(PROFILE).warmup.labels  # resolved: it may come from a base
    prior = load_settings(project / "params.yaml").task.prior_title
    assert f"{method_name('grpo', labels, prior)} ({PROFILE})" in comparison
    errors = (project / "reports/comparison/errors.md").read_text(encoding="utf-8")
    assert "## F1 per label" in errors and f"{PROFILE}/grpo" in errors and "agree against the gold label" in errors
    assert sum(1 for _ in open(project / "data/split/test.jsonl", encoding="utf-8")) == 776
    # the serve step's smoke answers come in the rows' order, whatever order the server answered in
    served = json.loads((project / f"reports/serve/{PROFILE}/server.json").read_text(encoding="utf-8"))
    with open(project / "data/split/validation.jsonl", encoding="utf-8") as fh:
        first_rows = [json.loads(line)["text"] for line, _ in zip(fh, range(served["smoke"]["rows"]), strict=False)]
    assert [a["text"] for a in served["smoke"]["answers"]] == first_rows

    # MLflow: one parent run for this `dvc repro`, finished, with a nested run per step
    all_runs = runs(project)
    parents = [r for r in all_runs if r.data.tags.get("pipeline.key", "").startswith("dvc-repro:")]
    assert len(parents) == 1, [r.data.tags for r in all_runs]
    parent = parents[0]
    assert parent.info.status == "FINISHED" and parent.info.run_name.startswith("dvc repro ")
    assert parent.data.tags["profile"] == PROFILE and re.fullmatch(r"[0-9a-f]{40}", parent.data.tags["git.commit"])
    children = {r.data.tags["pipeline.step"]: r for r in all_runs if r.data.tags.get("mlflow.parentRunId")}
    assert {f"{s}@relation" if s in PER_RUN else s for s in children} == ran
    assert {r.data.tags["mlflow.parentRunId"] for r in children.values()} == {parent.info.run_id}
    for step, child in children.items():
        tags = child.data.tags
        assert tags["dvc.stage"] in (step, f"{step}@relation") and re.fullmatch(r"[0-9a-f]{32}", tags["dvc.lock_md5"])
        assert re.fullmatch(r"[0-9a-f-]{36}", tags["prefect.flow_run_id"]), tags
    # the headline numbers are on the parent, for the experiment view
    assert "grpo/test_weighted_f1" in parent.data.metrics and "baseline/test_weighted_f1" in parent.data.metrics

    # train: the three models, the reward history, and all of it in the train run
    for model in ("base", "warmup", "grpo"):
        assert (project / f"models/{PROFILE}" / model / "tokenizer.json").is_file(), model
    assert not list((project / f"models/{PROFILE}").glob("*.partial"))
    with open(project / f"reports/train/{PROFILE}/reward_history.csv", encoding="utf-8") as fh:
        history_rows = list(csv.DictReader(fh))
    assert [int(float(r["step"])) for r in history_rows] == [1, 2]
    assert {"reward", "rewards/format_reward/mean", "rewards/label_reward/mean", "kl"} <= set(history_rows[0])
    assert "step_time" not in history_rows[0]  # wall-clock times are in MLflow, not in DVC's outputs
    train_metrics = json.loads((project / f"reports/train/{PROFILE}/metrics.json").read_text())
    assert train_metrics["reward"]["first"] == pytest.approx(float(history_rows[0]["reward"]))
    # validated at the start, at eval_steps (2) and at the end: greedy scores and TRL's sampled rewards
    with open(project / f"reports/train/{PROFILE}/validation_history.csv", encoding="utf-8") as fh:
        evaluations = list(csv.DictReader(fh))
    assert [int(r["step"]) for r in evaluations] == [0, 2]
    assert {"eval_greedy_weighted_f1", "eval_greedy_top_share", "eval_rewards/label_reward/mean"} <= set(evaluations[0])
    assert train_metrics["validation_curve"]["evaluations"] == 2
    client = mlflow_client(project)
    train_run = children["train"]
    history = client.get_metric_history(train_run.info.run_id, "grpo/reward")
    assert [m.step for m in history] == [1, 2]
    curve = client.get_metric_history(train_run.info.run_id, "grpo/eval_greedy_weighted_f1")
    assert [m.step for m in curve] == [0, 2]
    assert client.get_metric_history(train_run.info.run_id, "grpo/answers/top_share")
    assert len(client.get_metric_history(train_run.info.run_id, "warmup/loss")) >= 1
    assert "grpo/val_weighted_f1" in train_run.data.metrics and "warmup/val_weighted_f1" in train_run.data.metrics
    assert train_run.data.params[f"{PROFILE}.grpo.loss_type"] == "grpo"
    artifacts = {a.path for a in client.list_artifacts(train_run.info.run_id, "completions")}
    assert artifacts == {"completions/step_00002.json"}  # sample completions every completions_every steps
    artifacts = {a.path for a in client.list_artifacts(train_run.info.run_id, "train")}
    assert {
        "train/plan.json",
        "train/metrics.json",
        "train/reward_curve.png",
        "train/reward_history.csv",
        "train/validation_curve.png",
        "train/validation_history.csv",
        "train/published_step.json",
    } <= artifacts

    # the GRPO model is registered, with its validation score, and answers through pyfunc
    (version,) = client.search_model_versions(f"name = 'people-relation-{PROFILE}'")
    assert version.run_id == children["train"].info.run_id
    assert 0 <= float(version.tags["val_weighted_f1"]) <= 1 and version.tags["profile"] == PROFILE
    # the champion is chosen at registration, on validation
    assert client.get_model_version_by_alias(f"people-relation-{PROFILE}", "champion").version == version.version
    import mlflow.pyfunc
    import pandas as pd

    mlflow.set_tracking_uri(f"sqlite:///{project / 'mlflow.db'}")
    model = mlflow.pyfunc.load_model(f"models:/people-relation-{PROFILE}/{version.version}")
    rows = pd.DataFrame({"text": ["程砚秋与果素瑛生有三子一女。"], "people1": ["程砚秋"], "people2": ["果素瑛"]})
    answers = model.predict(rows)
    assert list(answers.columns) == ["completion", "think", "answer", "format_ok", "error"] and len(answers) == 1

    out, elapsed = run(project, "dvc", "repro", env=env)
    assert "Data and pipelines are up to date" in out
    assert elapsed < 30, f"a no-op repro took {elapsed:.1f}s"


def test_outputs_round_trip_through_the_dvc_remote(project, env, repro):
    model = project / f"models/{PROFILE}/grpo/model.safetensors"
    before = md5(model)
    out = dvc(project, "push", env=env)
    assert re.search(r"\d+ files? pushed", out), out
    assert any((project / ".dvc-storage").rglob("*"))
    shutil.rmtree(project / ".dvc/cache")
    shutil.rmtree(project / f"models/{PROFILE}")
    shutil.rmtree(project / "data/split")
    dvc(project, "pull", env=env)
    assert md5(model) == before
    assert "up to date" in dvc(project, "status", env=env)


def test_plots_render_offline(project, env, repro, tmp_path):
    dvc(project, "plots", "show", "--out", str(tmp_path / "plots"), env=env)
    page = (tmp_path / "plots" / "index.html").read_text(encoding="utf-8")
    assert "<script src=" not in page and "cdn." not in page
    images = re.findall(r'<img src="([^"]+)"', page)
    assert len(images) >= 7
    assert any("validation_curve" in src for src in images) and any("curves" in src for src in images)
    for src in images:
        assert (tmp_path / "plots" / src).stat().st_size > 5_000, src


def test_prefect_deployment_runs_the_dvc_pipeline_and_agrees_with_it(project, env, repro, prefect_api):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterTags

    run(project, "prefect", "work-pool", "create", POOL, "--type", "process", "--overwrite", env=env)
    out, deploy_s = run(project, "prefect", "--no-prompt", "deploy", "--name", "cpu", env=env)
    assert "pipeline/cpu" in out, out
    params = json.dumps({"set_params": ["baseline.C=5e-1"]})
    out, _ = run(project, "prefect", "deployment", "run", "pipeline/cpu", "--params", params, env=env)
    flow_run_id = re.search(r"UUID: ([0-9a-f-]{36})", out).group(1)
    out, worker_s = run(project, "prefect", "worker", "start", "--pool", POOL, "--run-once", env=env, timeout=900)

    import asyncio

    async def fetch():
        async with get_client() as client:
            flow_run = await client.read_flow_run(flow_run_id)
            steps = await client.read_flow_runs(
                flow_run_filter=FlowRunFilter(tags=FlowRunFilterTags(all_=[f"pipeline-run:{flow_run_id}"]))
            )
            return flow_run, steps

    flow_run, steps = asyncio.run(fetch())
    assert flow_run.state.is_completed(), (flow_run.state, out[-4000:])
    # the deployment ran DVC: only what the new value made stale ran, and dvc.lock has it
    # the two step flow runs it started (baseline, report) carry its tag in Prefect
    assert len(steps) == 2 and all(s.state.is_completed() for s in steps)
    lock = yaml.safe_load((project / "dvc.lock").read_text())
    assert lock["stages"]["baseline@relation"]["params"]["params.yaml"]["baseline"]["C"] in (0.5, "5e-1", "0.5")
    assert yaml.safe_load((project / "params.yaml").read_text())["baseline"]["C"] in (0.5, "5e-1")

    # MLflow: the deployment's parent run, linked both ways, with the stages it ran nested
    parent = next(r for r in runs(project) if r.data.tags.get("prefect.flow_run_id") == flow_run_id)
    tags = parent.data.tags
    assert tags["pipeline.kind"] == "prefect" and parent.info.status == "FINISHED"
    assert tags["stage.baseline.relation"] == "ran" and tags["stage.report.relation"] == "ran"
    skipped = STAGES - {"baseline@relation", "report@relation"}
    assert all(tags[f"stage.{s.replace('@', '.')}"] == "skipped" for s in skipped)
    assert steps_under(project, parent.info.run_id) == {"baseline", "report"}

    # ...and plain DVC agrees: nothing is stale
    out, elapsed = run(project, "dvc", "repro", env=env)
    assert "Data and pipelines are up to date" in out
    print(f"deploy {deploy_s:.1f}s, worker run-once {worker_s:.1f}s, no-op repro {elapsed:.1f}s")


def test_dvc_experiments_set_params_and_compare_metrics(project, env, repro):
    git(project, "add", "-A")
    git(project, "commit", "-qm", "results")
    out = dvc(project, "exp", "run", "-n", "smaller-c", "-S", "baseline.C=2e-2", env=env)
    assert "Running stage 'baseline@relation'" in out and "Stage 'train@relation' didn't change, skipping" in out
    shown = json.loads(dvc(project, "exp", "show", "--json", env=env))
    names = [e.get("name") for rev in shown for e in (rev.get("experiments") or []) for e in e.get("revs", [])]
    assert "smaller-c" in names, json.dumps(shown)[:2000]
    diff = json.loads(dvc(project, "metrics", "diff", "--json", env=env))
    changed = diff["reports/baseline/metrics.json"]
    assert "test.weighted_f1" in changed and changed["test.weighted_f1"]["diff"] != 0
    # the experiment's steps nest under one MLflow run named after it
    parent = next(r for r in runs(project) if r.data.tags.get("pipeline.key") == "dvc-exp:smaller-c")
    assert steps_under(project, parent.info.run_id) == {"baseline", "report"}
