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
    from tasks.tracking import pipeline_group

    assert pipeline_group({}) is None
    assert pipeline_group({"DVC_EXP_NAME": "bushy-lamb", "DVC_STAGE": "train"}) == (
        "dvc-exp:bushy-lamb",
        "dvc exp run bushy-lamb",
    )
    # under a plain `dvc repro`, the key is that dvc process; pytest is not one, so none
    assert pipeline_group({"DVC_STAGE": "train"}) is None
