"""A step against a real `mlflow server` named by MLFLOW_TRACKING_URI: runs, params, metrics
and artifacts land on the server (artifacts through its proxy), not in the project's store."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from conftest import run_step

pytestmark = pytest.mark.integration


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def tracking_server(tmp_path):
    port = free_port()
    store = tmp_path / "server"
    store.mkdir()
    log = open(tmp_path / "mlflow-server.log", "w")
    command = [
        str(Path(sys.executable).parent / "mlflow"), "server",
        "--backend-store-uri", f"sqlite:///{store / 'mlflow.db'}",
        "--artifacts-destination", str(store / "artifacts"),
        "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
    ]  # fmt: skip
    env = os.environ | {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}  # no GenAI job workers
    server = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        assert server.poll() is None, (tmp_path / "mlflow-server.log").read_text()[-3000:]
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, "mlflow server did not start in 120 s"
        time.sleep(0.5)
    yield url, store
    os.killpg(server.pid, 15)
    server.wait(timeout=30)
    log.close()


def test_a_step_logs_to_the_tracking_server_in_mlflow_tracking_uri(
    tracking_server, prefect_api, sandbox_params, tmp_path
):
    from mlflow import MlflowClient

    url, store = tracking_server
    params_file = sandbox_params()
    env = os.environ | {"PREFECT_API_URL": prefect_api, "MLFLOW_TRACKING_URI": url}
    result = run_step("prepare", params_file, env)
    assert result.returncode == 0, result.stderr[-3000:]
    client = MlflowClient(tracking_uri=url)
    experiment = client.get_experiment_by_name("people-relation-grpo")
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.data.tags["pipeline.step"] == "prepare" and run.data.metrics["rows.test"] == 776
    assert {a.path for a in client.list_artifacts(run.info.run_id, "data")} >= {"data/data_report.json"}
    assert any((store / "artifacts").rglob("data_report.json"))  # stored by the server, through its proxy
    assert not (tmp_path / "mlflow.db").exists()  # the sandbox's own store was not used
