"""A request guard in front of every route of the vLLM server (an ASGI middleware).

vLLM checks its API key only on routes under ``/v1`` (and a few other prefixes): with a
key set, ``/tokenize``, ``/detokenize``, ``/metrics`` and the rest still answer anyone. It
also reads a request body of any size, and a body that is not UTF-8 surfaces as a server
error. The guard runs before vLLM on every request:

* a wrong or missing key (``Authorization: Bearer <key>``) gets 401 on every route but the
  open ones (liveness probes, ``serve.limits.open_routes``);
* a body over ``serve.limits.max_body_bytes`` gets 413, by its Content-Length or, without
  one, as soon as the bytes read pass the limit;
* a body that is not UTF-8 gets 400.

vLLM loads the guard by import path (``--middleware``) and constructs it with the app only,
so its settings come from the environment the server is started with (:func:`guard_env`).
"""

from __future__ import annotations

import hashlib
import os
import secrets
from collections.abc import Mapping

from starlette.datastructures import Headers
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

GUARD = "people_relation.serving.guard.RequestGuard"  # what vLLM's --middleware imports
MAX_BODY_ENV = "PEOPLE_RELATION_MAX_BODY_BYTES"
OPEN_ROUTES_ENV = "PEOPLE_RELATION_OPEN_ROUTES"
KEY_ENV = "VLLM_API_KEY"  # the variable vLLM itself reads its key from


def guard_env(max_body_bytes: int, open_routes: tuple[str, ...]) -> dict[str, str]:
    """The variables that configure the guard (the key is in ``VLLM_API_KEY`` already)."""
    return {MAX_BODY_ENV: str(max_body_bytes), OPEN_ROUTES_ENV: ",".join(open_routes)}


def _digest(value: str) -> bytes:
    return hashlib.sha256(value.encode("utf-8", "surrogateescape")).digest()


def key_matches(headers: Mapping[str, str], expected_digest: bytes) -> bool:
    """Whether ``headers`` carry ``Authorization: Bearer <key>`` with the expected key
    (compared in constant time, as digests)."""
    scheme, _, token = headers.get("authorization", "").partition(" ")
    return scheme.lower() == "bearer" and secrets.compare_digest(_digest(token.strip()), expected_digest)


def _error(status: int, message: str) -> JSONResponse:
    # the error envelope of the OpenAI API, which vLLM's own errors use too
    kind = {401: "Unauthorized", 413: "RequestTooLarge"}.get(status, "BadRequestError")
    return JSONResponse({"error": {"message": message, "type": kind, "code": status}}, status_code=status)


class RequestGuard:
    """Refuses unauthorised, oversized and non-UTF-8 requests before the app sees them."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        try:
            self.max_body = int(os.environ[MAX_BODY_ENV])
        except (KeyError, ValueError):
            raise RuntimeError(
                f"the request guard needs {MAX_BODY_ENV} (a byte count): start the server "
                "through people_relation.serving (it sets it from serve.limits)"
            ) from None
        self.open_routes = frozenset(r for r in os.environ.get(OPEN_ROUTES_ENV, "").split(",") if r)
        key = os.environ.get(KEY_ENV)
        self.key_digest = _digest(key) if key else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":  # lifespan; websockets are refused by the routes vLLM has
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        path = scope["path"].removeprefix(scope.get("root_path", ""))
        if (
            self.key_digest is not None
            and scope["method"] != "OPTIONS"
            and path not in self.open_routes
            and not key_matches(headers, self.key_digest)
        ):
            await _error(401, "missing or wrong API key: send 'Authorization: Bearer <key>'")(scope, receive, send)
            return
        declared = headers.get("content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_body):
            await _error(413, f"the request body is over {self.max_body} bytes")(scope, receive, send)
            return
        body, too_large = await self._read_body(receive)
        if too_large:
            await _error(413, f"the request body is over {self.max_body} bytes")(scope, receive, send)
            return
        try:
            body.decode("utf-8")
        except UnicodeDecodeError as err:
            await _error(400, f"the request body is not UTF-8 (byte {body[err.start]:#04x} at offset {err.start})")(
                scope, receive, send
            )
            return
        await self.app(scope, _replay(body, receive), send)

    async def _read_body(self, receive: Receive) -> tuple[bytes, bool]:
        """The whole body (at most ``max_body`` bytes), and whether it was over the limit."""
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                return b"".join(chunks), False
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body:
                return b"", True
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks), False


def _replay(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that hands the app the body already read, then waits as the original does
    (for the disconnect a streaming response listens for)."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay
