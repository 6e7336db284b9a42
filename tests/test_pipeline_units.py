"""The pipeline flow's view of DVC: stage order, outcomes, exit codes, overrides, MLflow grouping."""

from __future__ import annotations

import pytest

from people_relation.pipeline import (
    EXIT_TRANSIENT,
    PipelineError,
    check_overrides,
    failed_exit_code,
    is_transient,
    stage_order,
    stage_outcome,
    with_upstream,
)

EDGES = {
    "prepare": set(),
    "split": {"prepare"},
    "train": {"split"},
    "baseline": {"split"},
    "serve": {"train", "split"},
    "evaluate": {"train", "split", "serve"},
    "report": {"evaluate", "baseline"},
}
DECLARED = ["prepare", "split", "train", "baseline", "serve", "evaluate", "report"]


def test_stage_order_runs_dependencies_first_and_keeps_the_file_order_for_ties():
    assert stage_order(EDGES, DECLARED) == DECLARED
    # declared out of order: still dependencies first
    shuffled = ["report", "evaluate", "serve", "baseline", "train", "split", "prepare"]
    order = stage_order(EDGES, shuffled)
    for stage, deps in EDGES.items():
        assert all(order.index(d) < order.index(stage) for d in deps)
    assert order.index("baseline") < order.index("train")  # the tie follows the declared order


def test_a_cycle_is_reported():
    with pytest.raises(PipelineError, match="cycle"):
        stage_order({"a": {"b"}, "b": {"a"}}, ["a", "b"])


def test_targets_bring_their_upstream_along():
    assert with_upstream(DECLARED, EDGES, ["baseline"]) == ["prepare", "split", "baseline"]
    assert with_upstream(DECLARED, EDGES, ["serve"]) == ["prepare", "split", "train", "serve"]
    with pytest.raises(PipelineError, match="unknown stage"):
        with_upstream(DECLARED, EDGES, ["deploy"])


def test_stage_outcome_reads_dvc_output():
    assert stage_outcome("split", "Running stage 'split':\n> python -m flows.split") == "ran"
    assert stage_outcome("split", "Stage 'split' didn't change, skipping\nData and pipelines are up to date.") == (
        "skipped"
    )
    with pytest.raises(PipelineError, match="could not tell"):
        stage_outcome("split", "something else")


def test_exit_codes_say_whether_a_retry_can_help():
    output = "ERROR: failed to reproduce 'serve': failed to run: python -m flows.serve, exited with 75"
    assert failed_exit_code(output) == EXIT_TRANSIENT and is_transient(EXIT_TRANSIENT)
    assert failed_exit_code("failed to run: python -m flows.prepare, exited with 1") == 1
    assert not is_transient(1) and not is_transient(None)
    assert failed_exit_code("ERROR: unexpected error") is None


def test_overrides_need_key_and_value():
    assert check_overrides(["split.seed=7", "baseline.C=5e-1"]) == ["split.seed=7", "baseline.C=5e-1"]
    for bad in ("split.seed", "=7"):
        with pytest.raises(PipelineError, match="KEY=VALUE"):
            check_overrides([bad])


def test_steps_group_under_the_dvc_run_that_started_them(monkeypatch):
    from people_relation.infra.tracking import pipeline_group

    assert pipeline_group({}) is None
    assert pipeline_group({"DVC_EXP_NAME": "bushy-lamb", "DVC_STAGE": "train"}) == (
        "dvc-exp:bushy-lamb",
        "dvc exp run bushy-lamb",
    )
    # under a plain `dvc repro`, the key is that dvc process; pytest is not one, so none
    assert pipeline_group({"DVC_STAGE": "train"}) is None


def test_deployments_share_one_entrypoint_and_their_params_resolve(project_root, tmp_path):
    """prefect.yaml: the CPU and GPU deployments differ only in parameters and pool, and the
    GPU one's set_params, applied as the flow applies them, selects the published recipe."""
    import shutil

    import yaml
    from dvc.utils.hydra import apply_overrides

    from people_relation.infra.paths import resolve_arm
    from people_relation.settings import load_settings
    from steps.train import plan

    config = yaml.safe_load((project_root / "prefect.yaml").read_text(encoding="utf-8"))
    deployments = {d["name"]: d for d in config["deployments"]}
    arms = ("cpu-rl", "cpu-prior", "cpu-pretrained-prior", "cpu-pretrained")
    assert set(deployments) == {"cpu", "qwen2.5-7b", *arms}
    for name, profile in ((a, a) for a in arms):
        arm = deployments.pop(name)  # another profile through train and evaluate
        assert arm["entrypoint"] == "flows/arm.py:arm_flow" and arm["parameters"] == {"arm": profile}
    assert {d["entrypoint"] for d in deployments.values()} == {"flows/pipeline.py:pipeline_flow"}
    assert deployments["cpu"]["parameters"]["set_params"] == []
    assert deployments["cpu"]["work_pool"]["name"] != deployments["qwen2.5-7b"]["work_pool"]["name"]

    params_file = tmp_path / "params.yaml"
    shutil.copy(project_root / "params.yaml", params_file)
    apply_overrides(params_file, check_overrides(deployments["qwen2.5-7b"]["parameters"]["set_params"]))
    settings = load_settings(params_file)
    assert settings.train.profile == "qwen2.5-7b"
    resolved = plan(resolve_arm(settings), str(params_file))
    assert resolved["batch"]["completions_per_step"] == 192 and resolved["grpo_config"]["beta"] == 0.001
    assert resolved["grpo_config"]["vllm_mode"] == "server"


@pytest.mark.integration
def test_an_arm_is_another_defined_profile(project_root, settings):
    """`flows.arm` refuses the pipeline's own profile (DVC keeps its lock) and unknown ones,
    before anything runs."""
    import subprocess
    import sys

    from flows.arm import check_arm
    from people_relation.params import ParamsError

    own = settings.train.profile
    check_arm(settings, "cpu-rl")
    with pytest.raises(ParamsError, match="no profile 'tpu'; defined profiles: cpu, cpu-prior, cpu-rl"):
        check_arm(settings, "tpu")
    result = subprocess.run(
        [sys.executable, "-m", "flows.arm", "--profile", own],
        cwd=project_root,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1, result.stderr[-2000:]
    assert f"'{own}' is the profile of run 'relation' (runs.relation.profile); `dvc repro` trains" in result.stderr


def test_the_pipeline_command_keeps_the_exit_status_contract():
    from flows.pipeline import pipeline_exit_status
    from people_relation.params import ParamsError
    from people_relation.pipeline import RequestRefused
    from steps.pipeline import StageFailed

    # a stage that still failed after its retries ends the pipeline with its own contract status
    assert pipeline_exit_status(StageFailed("evaluate", EXIT_TRANSIENT, "")) == 75
    assert pipeline_exit_status(StageFailed("evaluate", 2, "")) == 2
    for crashed in (1, None, -9, 137):  # bad data, an unreadable DVC message, a kill
        assert pipeline_exit_status(StageFailed("train", crashed, "")) == 1
    # what the run was asked for, refused before any stage ran
    with pytest.raises(RequestRefused) as refused:
        with_upstream(DECLARED, EDGES, ["trian"])
    assert pipeline_exit_status(refused.value) == 2
    with pytest.raises(RequestRefused) as refused:
        check_overrides(["split.seed"])
    assert pipeline_exit_status(refused.value) == 2
    # bad params or a pipeline that cannot run as defined
    assert pipeline_exit_status(ParamsError("params.yaml: pipeline.retries names unknown stage(s)")) == 1
    with pytest.raises(PipelineError) as cycle:
        stage_order({"a": {"b"}, "b": {"a"}}, ["a", "b"])
    assert pipeline_exit_status(cycle.value) == 1
    assert pipeline_exit_status(KeyError("a bug")) is None  # shown with its traceback
