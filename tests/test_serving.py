"""A real vLLM server on a tiny model: the served prompt, answers, API key, predict, clean
stops, and an evaluation that survives Ctrl-C and a killed server without losing a row."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from conftest import served_sandbox, server_pids

from people_relation.infra.data import read_examples
from people_relation.training.tokenizer import load_tokenizer

pytestmark = pytest.mark.integration

KEY_ENV = "PEOPLE_RELATION_API_KEY"


def test_serve_hold_answers_with_the_training_prompt_and_stops_on_ctrl_c(held_server):
    """The session's server is ``flows.serve --hold``: it needs its key, renders exactly the
    prompt GRPO trained on and answers like predict; its clean stop on Ctrl-C is checked when
    the session ends (the ``held_server`` fixture's teardown)."""
    from people_relation.serving.client import ClientSettings, Sampling, answer_rows

    base_url, root, task = held_server.base_url, held_server.root, held_server.settings.task
    rows = read_examples(root / "data" / "split" / "validation.jsonl")[:6]
    key = {"Authorization": f"Bearer {held_server.api_key}"}
    assert httpx.get(f"{base_url}/models", timeout=30).status_code == 401  # the API needs the key
    assert httpx.get(f"{base_url}/models", headers=key, timeout=30).status_code == 200

    # the chat endpoint renders exactly the prompt GRPO trained on
    tokenizer = load_tokenizer(held_server.model_dir)
    e = rows[0]
    body = {
        "model": "people-relation",
        "messages": task.build_messages(e.inputs),
        "add_generation_prompt": False,
        "continue_final_message": True,
    }
    served = httpx.post(f"{base_url.removesuffix('/v1')}/tokenize", json=body, headers=key, timeout=30)
    expected = tokenizer(task.render_prompt(tokenizer, e.inputs), add_special_tokens=False)
    assert served.json()["tokens"] == expected["input_ids"]

    out = root / "hold-answers.jsonl"
    answered = answer_rows(
        task,
        rows,
        base_url,
        held_server.api_key,
        "people-relation",
        Sampling(max_tokens=48),
        ClientSettings(concurrency=3, timeout_s=60, max_retries=1),
        out,
    )
    records = {r["id"]: r for r in map(json.loads, out.read_text(encoding="utf-8").splitlines())}
    assert answered == 6 and sorted(records) == sorted(r.id for r in rows)

    # predict through the running server: the same greedy completion
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "apps.predict",
            "--params-file",
            str(held_server.params_file),
            "--url",
            base_url,
            "--text",
            e["text"],
            "--people1",
            e["people1"],
            "--people2",
            e["people2"],
            "--json",
        ],
        capture_output=True,
        text=True,
        env=os.environ | {KEY_ENV: held_server.api_key},
        timeout=120,
    )
    assert result.returncode in (0, 3), result.stderr  # 3: the untrained model gave no valid label
    assert json.loads(result.stdout)["completion"] == records[e.id]["completion"]


def test_greedy_validation_in_training_decodes_as_the_served_model(held_server):
    """One decoding for choosing and for reporting: the greedy answers GRPO's in-training
    validation generates (transformers, in the training process) are the vLLM server's
    answers to the same rows, token for token, on the session's tiny model."""
    from people_relation.serving.client import ClientSettings, Sampling, answer_rows
    from people_relation.training.generation import generate_completions
    from people_relation.training.models import load_causal_lm

    task = held_server.settings.task
    rows = read_examples(held_server.root / "data" / "split" / "validation.jsonl")[:12]
    budget = held_server.settings.profile("cpu").validation.max_new_tokens
    model = load_causal_lm(held_server.model_dir)
    # a model folder may set a penalty (Qwen2.5-Instruct: 1.05); vLLM does not apply it. This one is
    # strong enough to change the untrained model's answers, were it applied
    model.generation_config.repetition_penalty = 5.0
    in_training = generate_completions(task, model, load_tokenizer(held_server.model_dir), rows, budget, batch_size=4)
    out = held_server.root / "decoding-answers.jsonl"
    answer_rows(
        task,
        rows,
        held_server.base_url,
        held_server.api_key,
        "people-relation",
        Sampling(max_tokens=budget),
        ClientSettings(concurrency=4, timeout_s=60, max_retries=1),
        out,
    )
    served = {r["id"]: r["completion"] for r in map(json.loads, out.read_text(encoding="utf-8").splitlines())}
    assert [served[e.id] for e in rows] == in_training


def test_predict_refuses_bad_input_before_starting_anything(tmp_path, params, published_split, tiny_model):
    params_file = served_sandbox(tmp_path, params, published_split, tiny_model)
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "apps.predict",
            "--params-file",
            str(params_file),
            "--text",
            "张三和李四结婚了",
            "--people1",
            "王五",
            "--people2",
            "李四",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert "people1 '王五' does not occur in the text" in result.stderr


def wait_for_lines(path: Path, count: int, proc: subprocess.Popen, timeout: float = 300) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        lines = len(path.read_text(encoding="utf-8").splitlines()) if path.is_file() else 0
        if lines >= count:
            return lines
        assert proc.poll() is None, "evaluation ended early"
        time.sleep(0.2)
    raise AssertionError(f"{path} did not reach {count} lines in {timeout}s")


def test_evaluation_resumes_after_the_server_is_killed_without_asking_twice(
    tmp_path, params, published_split, tiny_model, prefect_api
):
    root = tmp_path
    params_file = served_sandbox(
        root,
        params,
        published_split,
        tiny_model,
        evaluate__max_rows=40,
        evaluate__concurrency=1,
        evaluate__answer_retries=0,
        profiles__cpu__evaluate_models=["grpo"],
    )
    env = os.environ | {"PREFECT_API_URL": prefect_api, "PYTHONUNBUFFERED": "1"}
    env.pop(KEY_ENV, None)
    state = root / "checkpoints" / "evaluate" / "cpu" / "grpo" / "predictions.jsonl"
    command = [sys.executable, "-m", "flows.evaluate", "--params-file", str(params_file)]
    model_dir = str(root / "models" / "cpu" / "grpo")

    def start() -> subprocess.Popen:
        log = (root / "evaluate.log").open("w", encoding="utf-8")  # a file: a full pipe would block the run
        return subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, text=True)

    def finish(proc: subprocess.Popen, timeout: float) -> str:
        proc.wait(timeout=timeout)
        return (root / "evaluate.log").read_text(encoding="utf-8")

    # 1. the server is killed mid-evaluation: the run fails with a clear message, answers kept
    proc = start()
    wait_for_lines(state, 8, proc)
    for pid in server_pids(model_dir):
        try:
            os.killpg(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    output = finish(proc, 300)
    assert proc.returncode == 75, output[-3000:]  # EX_TEMPFAIL: a retry can help
    assert re.search(r"rows got no answer from http://127\.0\.0\.1:\d+/v1", output)
    assert "a re-run asks only the missing ones" in output
    second = state.read_text(encoding="utf-8").splitlines()
    assert 8 <= len(second) < 40
    assert not server_pids(model_dir)

    # 2. a re-run asks only what is missing and scores all 40 rows
    proc = start()
    output = finish(proc, 600)
    assert proc.returncode == 0, output[-3000:]
    final = state.read_text(encoding="utf-8").splitlines()
    assert final[: len(second)] == second
    ids = [json.loads(line)["id"] for line in final]
    assert len(ids) == len(set(ids)) == 40
    assert f"{40 - len(second)} of 40 rows to ask ({len(second)} already answered)" in output
    metrics = json.loads((root / "reports" / "metrics" / "cpu.json").read_text(encoding="utf-8"))
    assert metrics["rows"] == 40 and 0 <= metrics["grpo"]["weighted_f1"] <= 1
    report = root / "reports" / "evaluate" / "cpu" / "grpo"
    assert {p.name for p in report.iterdir()} == {
        "predictions.jsonl",
        "metrics.json",
        "classification_report.txt",
        "confusion_matrix.png",
    }
    published = [json.loads(line) for line in (report / "predictions.jsonl").read_text(encoding="utf-8").splitlines()]
    assert len(published) == 40 and not any("latency_s" in r for r in published)  # no timings in DVC outputs
    assert not server_pids(model_dir)
    shutil.rmtree(root / "cache", ignore_errors=True)


class StandInServer:
    """What ``serve_until_stopped`` reads of a server; ``alive`` says what happens next."""

    model = "people-relation"
    base_url = "http://127.0.0.1:8000/v1"
    api_key = None
    log_path = Path("server.log")

    def __init__(self, outcome: str):
        self.outcome = outcome
        self.calls = 0

    def alive(self) -> bool:
        self.calls += 1
        if self.outcome == "sigterm" and self.calls == 2:
            os.kill(os.getpid(), signal.SIGTERM)  # as `kill PID`, a service manager or `docker stop` does
        return self.outcome != "died"


@pytest.mark.parametrize("outcome", ["sigterm", "died"])
def test_a_requested_stop_completes_the_serve_run_and_a_dead_server_fails_it(prefect_api, outcome):
    from prefect import flow

    from steps.serve import serve_until_stopped

    @flow
    def hold() -> None:
        serve_until_stopped(StandInServer(outcome))

    handler = signal.getsignal(signal.SIGTERM)
    state = hold(return_state=True)
    if outcome == "sigterm":
        assert state.is_completed(), state
    else:
        assert state.is_failed() and "exited on its own" in state.message, state
    assert signal.getsignal(signal.SIGTERM) == handler  # the handler is the caller's again
