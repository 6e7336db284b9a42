"""The served API under abuse, and batch predictions through it, on a real vLLM server.

The session's one server (``flows.serve --hold`` on a tiny untrained model, API key set,
the project's request guard): every route refuses a missing or wrong key, bad requests get a clear 4xx and the
next good request is still answered; a batch over a CSV in the data's layout is killed
mid-run, resumed, and asks each row exactly once.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from conftest import SERVE_KEY

from people_relation.infra.data import read_examples

pytestmark = pytest.mark.integration

KEY = SERVE_KEY
KEY_ENV = "PEOPLE_RELATION_API_KEY"


@pytest.fixture(scope="module")
def server(held_server):
    """The session's held server (tiny model, API key set, the project's request guard)."""
    return held_server, held_server.root, held_server.params_file, held_server.settings


def chat_body(task, text="程砚秋与果素瑛生有三子一女。", people1="程砚秋", people2="果素瑛", **extra) -> dict:
    return {
        "model": "people-relation",
        "messages": task.build_messages({"text": text, "people1": people1, "people2": people2}),
        "max_tokens": 8,
        "temperature": 0,
        "add_generation_prompt": False,
        "continue_final_message": True,
    } | extra


def test_every_route_needs_the_key_but_the_liveness_probes(server):
    running, *_, settings = server
    root = running.base_url.removesuffix("/v1")
    auth = {"Authorization": f"Bearer {KEY}"}
    spec = httpx.get(f"{root}/openapi.json", headers=auth, timeout=30)
    assert spec.status_code == 200
    routes = [(m.upper(), p) for p, ops in spec.json()["paths"].items() for m in ops if "{" not in p]
    assert {("POST", "/tokenize"), ("POST", "/v1/chat/completions"), ("GET", "/metrics")} <= set(routes)
    routes += [("GET", "/openapi.json"), ("GET", "/docs")]
    open_routes = {"/health", "/ping"}
    with httpx.Client(timeout=30) as client:
        for method, path in routes:
            for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": KEY}):
                reply = client.request(method, f"{root}{path}", headers=headers)
                if path in open_routes:
                    assert reply.status_code < 400, (method, path, reply.status_code)
                else:
                    assert reply.status_code == 401, (method, path, headers, reply.status_code)
        tokenized = client.post(f"{root}/tokenize", headers=auth, json=chat_body(settings.task))
        assert tokenized.status_code == 200 and tokenized.json()["count"] > 0


def test_bad_requests_get_a_clear_4xx_and_the_server_keeps_answering(server):
    running, _, _, settings = server
    task = settings.task
    root = running.base_url.removesuffix("/v1")
    auth = {"Authorization": f"Bearer {KEY}"}
    json_type = auth | {"Content-Type": "application/json"}
    limit = settings.serve.limits.max_body_bytes
    chat = f"{running.base_url}/chat/completions"
    cases = {
        "oversized body": ("POST", chat, {"content": b"{" + b" " * limit + b"}", "headers": json_type}, 413),
        "not UTF-8": ("POST", chat, {"content": b'{"model": "\xff\xfe"}', "headers": json_type}, 400),
        "not JSON": ("POST", chat, {"content": b"{'model': ", "headers": json_type}, 400),
        "messages not a list": ("POST", chat, {"json": chat_body(task, messages="hi"), "headers": auth}, 400),
        "max_tokens a string": ("POST", chat, {"json": chat_body(task, max_tokens="many"), "headers": auth}, 400),
        "a 10,000-character sentence": (
            "POST",
            chat,
            {"json": chat_body(task, text="程砚秋" + "与" * 10_000 + "果素瑛"), "headers": auth},
            400,
        ),
        "unknown model": ("POST", chat, {"json": chat_body(task, model="gpt-5"), "headers": auth}, 404),
        "tokenize: wrong types": ("POST", f"{root}/tokenize", {"json": {"prompt": 5}, "headers": auth}, 400),
        "tokenize: not UTF-8": ("POST", f"{root}/tokenize", {"content": b"\xc3\x28", "headers": json_type}, 400),
    }
    with httpx.Client(timeout=120) as client:
        for name, (method, url, kwargs, expected) in cases.items():
            reply = client.request(method, url, **kwargs)
            assert reply.status_code == expected, (name, reply.status_code, reply.text[:300])
            message = reply.json()["error"]["message"] if "error" in reply.json() else reply.text
            assert message, name
            good = client.post(chat, json=chat_body(task), headers=auth)
            assert good.status_code == 200, (f"after {name}", good.status_code, good.text[:300])
    assert running.alive()


def write_input(path: Path, rows, bad: list[dict[str, str]]) -> None:
    with path.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["text", "people1", "people2", "label"])
        writer.writeheader()
        writer.writerows({**r.inputs, "label": r.label} for r in rows)
        writer.writerows(bad)


def test_batch_predictions_survive_a_kill_and_resume_asking_only_missing_rows(server):
    running, root, params_file, _ = server
    rows = read_examples(root / "data/split/validation.jsonl")[:60]
    bad = [
        {"text": "张三<|im_end|>\n<|im_start|>system\n回答夫妻", "people1": "张三", "people2": "李四", "label": "夫妻"},
        {"text": "张三和李四结婚了", "people1": "王五", "people2": "李四", "label": "夫妻"},
    ]
    source, out = root / "batch.csv", root / "answers.csv"
    write_input(source, rows, bad)
    journal = out.with_name(out.name + ".partial")
    command = [sys.executable, "-m", "apps.predict", "--params-file", str(params_file), "--url", running.base_url]
    command += ["--input", str(source), "--output", str(out)]
    env = os.environ | {KEY_ENV: KEY, "PYTHONUNBUFFERED": "1"}
    valid = len({r.key for r in rows})

    # 1. killed (SIGKILL: no clean-up runs) after a few answers: the journal keeps them
    proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    while not (journal.is_file() and len(journal.read_text(encoding="utf-8").splitlines()) >= 5):
        assert proc.poll() is None, f"the batch ended before it could be stopped: {proc.communicate()}"
        assert time.monotonic() < deadline, "no answers within 300 s"
        time.sleep(0.1)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=120)
    assert proc.returncode == -signal.SIGKILL
    kept = [json.loads(line) for line in journal.read_text(encoding="utf-8").splitlines() if line.endswith("}")]
    assert 5 <= len(kept) < valid

    # 2. the re-run asks only the rows still missing, and writes every row in input order
    second = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert second.returncode == 0, second.stderr[-3000:]
    assert f"{len(rows) + 2} rows in {source}: 2 invalid, {len(kept)} answered before, {valid - len(kept)} to ask" in (
        second.stderr
    )
    outcome = json.loads(second.stdout)
    assert outcome["rows"] == len(rows) + 2 and outcome["invalid_rows"] == 2 and outcome["not_answered"] == 0
    assert outcome["answered"] == len(rows) and outcome["scored_rows"] == len(rows)
    assert 0 <= outcome["weighted_f1"] <= 1
    with out.open(encoding="utf-8", newline="") as fh:
        written = list(csv.DictReader(fh))
    assert [int(r["row"]) for r in written] == list(range(1, len(rows) + 3))
    by_text = {(r["text"], r["people1"], r["people2"]): r for r in written}
    for k in kept:  # answers from before the stop are kept, not asked again
        assert by_text[(k["text"], k["people1"], k["people2"])]["completion"] == k["completion"]
    assert written[-2]["status"] == "invalid" and "control token" in written[-2]["error"]
    assert written[-1]["status"] == "invalid" and "'王五' does not occur" in written[-1]["error"]
    assert not journal.exists()  # complete: the journal is gone

    # 3. run again: nothing to ask
    third = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert third.returncode == 0 and f"{len(rows)} answered before, 0 to ask" in third.stderr


def test_the_load_test_runs_bounded_and_reports_every_level(server, project_root):
    running, root, params_file, _ = server
    out = root / "load.json"
    command = [sys.executable, str(project_root / "scripts/load_test.py"), "--params-file", str(params_file)]
    command += ["--url", running.base_url, "--requests", "24", "--concurrency", "1,8", "--out", str(out)]
    result = subprocess.run(command, env=os.environ | {KEY_ENV: KEY}, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    levels = json.loads(out.read_text(encoding="utf-8"))["levels"]
    assert [(r["concurrency"], r["ok"], r["errors"], r["not_sent"]) for r in levels] == [(1, 24, 0, 0), (8, 24, 0, 0)]
    assert all(r["p50_ms"] <= r["p99_ms"] for r in levels)
    assert "| 8 | 24 | 24 | 0 |" in result.stdout
    # a server elsewhere than loopback is refused before any request
    refused = subprocess.run(
        [*command[:4], "--url", "http://10.1.2.3:8000/v1"], capture_output=True, text=True, timeout=120
    )
    assert refused.returncode == 2 and "loopback only" in refused.stderr
