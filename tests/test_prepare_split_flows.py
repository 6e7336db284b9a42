"""The prepare and split flows against a real Prefect server and a real MLflow store."""

from __future__ import annotations

import json
import os
import shutil

import mlflow
import pytest
from conftest import run_step

from people_relation.dataset import DataError
from people_relation.params import load_params

pytestmark = pytest.mark.integration

HEADER = "text,people1,people2,label\n"


def _outputs(params_file):
    p = load_params(params_file)
    return [p["data"]["prepared_dir"], p["reports"]["data_dir"]]


def _snapshot(paths):
    snap = {}
    for root in paths:
        for dirpath, _, files in os.walk(root):
            for name in files:
                full = os.path.join(dirpath, name)
                with open(full, "rb") as fh:
                    snap[full] = fh.read()
    return snap


def test_prepare_and_split_write_outputs_and_track_them(prefect_api, sandbox_params, tmp_path):
    from flows.prepare import prepare_flow
    from flows.split import split_flow

    params_file = sandbox_params()
    prepare_flow(params_file=str(params_file))
    split_flow(params_file=str(params_file))

    prepared = tmp_path / "data" / "prepared"
    assert sum(1 for _ in open(prepared / "train.jsonl", encoding="utf-8")) == 3105
    source = json.loads((prepared / "source.json").read_text())
    assert source["kind"] == "local" and len(source["sha256"]["test"]) == 64
    report = json.loads((tmp_path / "reports" / "data" / "data_report.json").read_text())
    assert report["rows"]["total"] == 3881
    assert (tmp_path / "reports" / "data" / "label_distribution.png").stat().st_size > 10_000
    split_report = json.loads((tmp_path / "reports" / "split" / "split_report.json").read_text())
    assert split_report["rows"]["test"] == 776
    assert split_report["rows"]["train"] + split_report["rows"]["validation"] == 3105

    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    runs = mlflow.search_runs(experiment_names=["people-relation-grpo"], output_format="list")
    by_step = {r.data.tags["pipeline.step"]: r for r in runs}
    assert set(by_step) == {"prepare", "split"}
    prepare_run = by_step["prepare"]
    assert prepare_run.info.status == "FINISHED"
    assert prepare_run.data.params["data.source"] == "auto"
    assert prepare_run.data.metrics["rows.test"] == 776
    assert prepare_run.data.metrics["leakage.shared_keys"] == 20
    assert prepare_run.data.tags["prefect.flow_run_id"]
    artifacts = {a.path for a in mlflow.MlflowClient().list_artifacts(prepare_run.info.run_id, "data")}
    assert {"data/data_report.json", "data/label_distribution.png", "data/source.json"} <= artifacts
    assert by_step["split"].data.params["split.strategy"] == "published"


BAD_FILES = {
    "missing-column": (HEADER.replace(",label", "") + "甲与乙,甲,乙\n").encode(),
    "unknown-label": (HEADER + "甲与乙,甲,乙,朋友\n").encode(),
    "name-not-in-text": (HEADER + "甲与乙,甲,丙,夫妻\n").encode(),
    "empty-file": b"",
    "non-utf8": HEADER.encode() + "甲与乙,甲,乙,夫妻\n".encode("gbk"),
}
EXPECTED = {
    "missing-column": "line 1: header",
    "unknown-label": "line 2: label '朋友'",
    "name-not-in-text": "line 2: people2 '丙'",
    "empty-file": "the file is empty",
    "non-utf8": "line 2: not valid UTF-8",
}


@pytest.mark.parametrize("case", list(BAD_FILES))
def test_bad_data_stops_with_a_clear_error_and_keeps_old_outputs(case, prefect_api, sandbox_params, data_dir, tmp_path):
    from flows.prepare import prepare_flow

    params_file = sandbox_params()
    prepare_flow(params_file=str(params_file))  # good outputs first
    before = _snapshot(_outputs(params_file))

    bad_dir = tmp_path / "bad"
    bad_dir.mkdir()
    shutil.copy(data_dir / "train.csv", bad_dir / "train.csv")
    (bad_dir / "test.csv").write_bytes(BAD_FILES[case])
    params_file = sandbox_params(data__local_dir=str(bad_dir))
    with pytest.raises(DataError) as err:
        prepare_flow(params_file=str(params_file))
    assert str(bad_dir / "test.csv") in str(err.value)
    assert EXPECTED[case] in str(err.value)
    assert _snapshot(_outputs(params_file)) == before
    leftovers = [p.name for p in (tmp_path / "data").iterdir()] + [p.name for p in (tmp_path / "reports").iterdir()]
    assert sorted(leftovers) == ["data", "prepared"], leftovers


def test_bad_data_on_a_fresh_run_writes_nothing(prefect_api, sandbox_params, tmp_path):
    from flows.prepare import prepare_flow

    bad_dir = tmp_path / "bad"
    bad_dir.mkdir()
    (bad_dir / "train.csv").write_bytes(BAD_FILES["unknown-label"])
    (bad_dir / "test.csv").write_bytes(BAD_FILES["unknown-label"])
    with pytest.raises(DataError):
        prepare_flow(params_file=str(sandbox_params(data__local_dir=str(bad_dir))))
    assert not (tmp_path / "data").exists() or not any((tmp_path / "data").iterdir())
    assert not (tmp_path / "reports").exists() or not any((tmp_path / "reports").iterdir())


def test_no_data_anywhere_says_where_it_looked(prefect_api, sandbox_params, tmp_path):
    """The command line: exit status 1 and a message naming both places and the fix."""
    params_file = sandbox_params(data__local_dir=str(tmp_path / "nowhere"))
    env = os.environ | {"PREFECT_API_URL": prefect_api, "HF_HUB_OFFLINE": "1"}
    result = run_step("prepare", params_file, env)
    assert result.returncode == 1, result.stderr[-2000:]
    message = result.stderr[result.stderr.index("error: no dataset found") :]
    assert str(tmp_path / "nowhere") in message
    assert "jclian91/people_relation_classification" in message
    assert "data.local_dir" in message and "dvc exp run -S" in message


def test_local_only_source_does_not_try_the_hub(prefect_api, sandbox_params, tmp_path):
    from flows.prepare import prepare_flow

    params_file = sandbox_params(data__local_dir=str(tmp_path / "nowhere"), data__source="local")
    with pytest.raises(DataError, match="no dataset found") as err:
        prepare_flow(params_file=str(params_file))
    assert "hub dataset" not in str(err.value)
