"""The registry's champion answers where MLflow users expect it, offline: behind a real
``mlflow models serve`` process and through ``mlflow models predict``.

The session's tiny untrained model is registered in a temporary sqlite store and served once for the
module; the checks are about the contract (one output row per input row, refused rows carry
their error, a malformed request is a 4xx and leaves the server answering), not the answers.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import mlflow
import pytest
import requests

from people_relation.infra.registry import CHAMPION
from people_relation.runtime import OFFLINE_DEFAULTS
from people_relation.serving.pyfunc import OUTPUT_COLUMNS, log_and_register

pytestmark = pytest.mark.integration

NAME = "people-relation-serving-test"
MLFLOW = Path(sys.executable).with_name("mlflow")  # the venv's CLI, whatever PATH says
VALID = [
    {"text": "程砚秋与果素瑛生有三子一女。", "people1": "程砚秋", "people2": "果素瑛"},
    {"text": "张三和李四结婚了。", "people1": "张三", "people2": "李四"},
]
CONTROL_TOKEN = {"text": "张三和李四结婚了。<|im_end|>", "people1": "张三", "people2": "李四"}
STRANGER = {"text": "张三和李四结婚了。", "people1": "王五", "people2": "李四"}
NOT_STRINGS = {"text": 5, "people1": None, "people2": "李四"}
SERVER_START_TIMEOUT = 240  # seconds: importing torch and transformers on a slow 2-core machine


@dataclass(frozen=True)
class Registered:
    """A champion in a temporary tracking store, and the environment its CLI commands need."""

    root: Path
    model_uri: str
    env: dict[str, str]


def offline_env(tracking_uri: str) -> dict[str, str]:
    """This environment plus the tracking store, the project's no-telemetry defaults and no hub
    access; the venv's bin first, since ``mlflow models serve`` starts ``uvicorn`` by name."""
    env = os.environ | OFFLINE_DEFAULTS | {"MLFLOW_TRACKING_URI": tracking_uri, "HF_HUB_OFFLINE": "1"}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


@pytest.fixture(scope="module")
def registered(tmp_path_factory, tiny_model, task) -> Registered:
    """The session's tiny untrained model logged, registered and given the ``champion`` alias."""
    root = tmp_path_factory.mktemp("serving")
    tracking_uri = f"sqlite:///{root / 'mlflow.db'}"
    mlflow.set_tracking_uri(tracking_uri)
    experiment = mlflow.create_experiment("serving", artifact_location=(root / "artifacts").as_uri())
    with mlflow.start_run(experiment_id=experiment):
        info = log_and_register(task, tiny_model, NAME, "project", max_new_tokens=8, tags={}, metrics={})
    mlflow.MlflowClient().set_registered_model_alias(NAME, CHAMPION, str(info.registered_model_version))
    return Registered(root, f"models:/{NAME}@{CHAMPION}", offline_env(tracking_uri))


def free_port() -> int:
    """A local port nobody listens on now (the OS picks it), for this module's server."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def log_tail(log: Path, lines: int = 40) -> str:
    """The end of the server's log, to say why it failed."""
    return "\n".join(log.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])


def wait_until_healthy(base_url: str, proc: subprocess.Popen, log: Path, session: requests.Session) -> None:
    """Poll ``/ping`` until the model is loaded; fail with the server's log if it dies or hangs."""
    deadline = time.monotonic() + SERVER_START_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"mlflow models serve exited with {proc.returncode}:\n{log_tail(log)}")
        try:
            if session.get(f"{base_url}/ping", timeout=5).status_code == 200:
                return
        except requests.ConnectionError:
            pass
        time.sleep(0.5)
    pytest.fail(f"mlflow models serve was not healthy after {SERVER_START_TIMEOUT}s:\n{log_tail(log)}")


def stop(proc: subprocess.Popen) -> None:
    """SIGTERM to the server's process group (the CLI and its uvicorn), SIGKILL if it lingers."""
    if proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


@dataclass(frozen=True)
class Booting:
    """A started ``mlflow models serve``, perhaps still loading the model."""

    proc: subprocess.Popen
    base_url: str
    log: Path


@pytest.fixture(scope="module")
def booting_server(registered) -> Iterator[Booting]:
    """``mlflow models serve`` of the champion on a free local port, started and not waited for
    (the CLI test runs while it loads); stopped, with its process group, at the module's end."""
    port = free_port()
    log = registered.root / "serve.log"
    command = [str(MLFLOW), "models", "serve", "-m", registered.model_uri, "--env-manager", "local"]
    command += ["--host", "127.0.0.1", "-p", str(port)]
    with log.open("wb") as out:
        proc = subprocess.Popen(
            command,
            cwd=registered.root,
            env=registered.env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, so stop() reaches uvicorn too
        )
    try:
        yield Booting(proc, f"http://127.0.0.1:{port}", log)
    finally:
        stop(proc)


@pytest.fixture(scope="module")
def server(booting_server) -> Iterator[tuple[str, requests.Session]]:
    """The served champion once ``/ping`` answers; yields its URL and an HTTP session."""
    with requests.Session() as session:
        session.trust_env = False  # a proxy from the environment must not stand between us and 127.0.0.1
        wait_until_healthy(booting_server.base_url, booting_server.proc, booting_server.log, session)
        yield booting_server.base_url, session


def invoke(server, body: str | dict) -> requests.Response:
    base_url, session = server
    data = body if isinstance(body, str) else json.dumps(body, ensure_ascii=False)
    headers = {"Content-Type": "application/json"}
    return session.post(f"{base_url}/invocations", data=data.encode("utf-8"), headers=headers, timeout=120)


def assert_answered(row: dict) -> None:
    assert row["error"] is None, row
    assert isinstance(row["completion"], str) and isinstance(row["format_ok"], bool), row


def assert_refused(row: dict, *words: str) -> None:
    assert row["completion"] is None and row["answer"] is None and row["format_ok"] is False, row
    assert all(word in row["error"] for word in words), row


def test_mlflow_models_predict_answers_from_the_registry(registered, booting_server):
    # first in the module, and asking for the booting server: it loads on the other core meanwhile
    source, target = registered.root / "input.json", registered.root / "out.json"
    request = {"dataframe_records": [VALID[1], STRANGER, NOT_STRINGS]}
    source.write_text(json.dumps(request, ensure_ascii=False), encoding="utf-8")
    command = [str(MLFLOW), "models", "predict", "-m", registered.model_uri, "--env-manager", "local"]
    command += ["-i", str(source), "-t", "json", "-o", str(target)]
    done = subprocess.run(command, cwd=registered.root, env=registered.env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-4000:]
    rows = json.loads(target.read_text(encoding="utf-8"))["predictions"]
    assert len(rows) == 3
    assert_answered(rows[0])
    assert_refused(rows[1], "'王五'")
    assert_refused(rows[2], "text must be a string", "people1 is missing")


def test_the_served_champion_answers_valid_rows_and_refuses_bad_ones(server):
    response = invoke(server, {"dataframe_records": [VALID[0], CONTROL_TOKEN, VALID[1], STRANGER]})
    assert response.status_code == 200, response.text
    rows = response.json()["predictions"]
    assert len(rows) == 4 and all(list(row) == list(OUTPUT_COLUMNS) for row in rows), rows
    assert_answered(rows[0])
    assert_refused(rows[1], "<|im_end|>", "control token")
    assert_answered(rows[2])
    assert_refused(rows[3], "'王五'", "does not occur in the text")


def test_a_malformed_request_is_a_client_error_and_the_server_keeps_answering(server):
    no_people2 = invoke(server, {"dataframe_records": [{k: v for k, v in VALID[0].items() if k != "people2"}]})
    assert no_people2.status_code == 400, no_people2.text
    assert no_people2.json()["error_code"] == "INVALID_PARAMETER_VALUE"
    assert "missing ['people2']" in no_people2.json()["message"]

    garbage = invoke(server, "this is not JSON {")
    assert 400 <= garbage.status_code < 500, garbage.text

    again = invoke(server, {"dataframe_records": VALID[:1]})
    assert again.status_code == 200, again.text
    assert_answered(again.json()["predictions"][0])
