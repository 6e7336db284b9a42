"""The request guard in front of the served API, on a real ASGI app (Starlette's test client).

The same guard runs inside the real vLLM server (``--middleware``); tests/test_abuse.py
checks it there. These cases pin each rule: the key on every route but the open ones,
413 for a body over the limit (declared or streamed), 400 for a body that is not UTF-8,
and a request that passes reaching the app with its body intact.
"""

from __future__ import annotations

import pytest
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from people_relation.serving.guard import KEY_ENV, RequestGuard, guard_env

LIMIT = 1024


async def echo(request):
    body = await request.body()
    return JSONResponse({"path": request.url.path, "bytes": len(body)})


def make_client(monkeypatch, key: str | None) -> TestClient:
    for name, value in guard_env(LIMIT, ("/health", "/ping")).items():
        monkeypatch.setenv(name, value)
    if key:
        monkeypatch.setenv(KEY_ENV, key)
    else:
        monkeypatch.delenv(KEY_ENV, raising=False)
    routes = [Route(p, echo, methods=["GET", "POST"]) for p in ("/health", "/tokenize", "/metrics", "/v1/models")]
    app = Starlette(routes=routes)
    app.add_middleware(RequestGuard)
    return TestClient(app)


@pytest.mark.parametrize("path", ["/tokenize", "/metrics", "/v1/models"])
def test_every_route_but_the_open_ones_needs_the_key(monkeypatch, path):
    client = make_client(monkeypatch, "s3cret")
    assert client.get(path).status_code == 401
    assert client.get(path, headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert client.get(path, headers={"Authorization": "Basic s3cret"}).status_code == 401
    reply = client.get(path, headers={"Authorization": "Bearer s3cret"})
    assert reply.status_code == 200 and reply.json()["path"] == path
    assert client.get("/health").status_code == 200  # liveness probes carry no key


def test_without_a_key_every_route_is_open(monkeypatch):
    assert make_client(monkeypatch, None).get("/tokenize").status_code == 200


def test_oversized_bodies_get_413_declared_or_streamed(monkeypatch):
    client = make_client(monkeypatch, None)
    reply = client.post("/tokenize", content=b"x" * (LIMIT + 1))
    assert reply.status_code == 413 and "over 1024 bytes" in reply.json()["error"]["message"]

    def chunks():  # no Content-Length: sent chunked, counted as it arrives
        for _ in range(3):
            yield b"y" * 600

    assert client.post("/tokenize", content=chunks()).status_code == 413
    ok = client.post("/tokenize", content=b"z" * LIMIT)
    assert ok.status_code == 200 and ok.json()["bytes"] == LIMIT  # the body reaches the app whole


def test_a_body_that_is_not_utf8_gets_400(monkeypatch):
    client = make_client(monkeypatch, None)
    reply = client.post("/tokenize", content=b'{"prompt": "\xff\xfe"}', headers={"Content-Type": "application/json"})
    assert reply.status_code == 400
    assert reply.json()["error"]["message"] == "the request body is not UTF-8 (byte 0xff at offset 12)"
    assert client.post("/tokenize", content="张三".encode()).status_code == 200


def test_the_guard_refuses_to_start_unconfigured(monkeypatch):
    monkeypatch.delenv("PEOPLE_RELATION_MAX_BODY_BYTES", raising=False)
    with pytest.raises(RuntimeError, match="needs PEOPLE_RELATION_MAX_BODY_BYTES"):
        RequestGuard(echo)
