"""The served model an application asks: the one running at a URL, or one started for it."""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from people_relation.errors import exit_status
from people_relation.infra.paths import resolve_arm
from people_relation.serving.client import Endpoint
from people_relation.serving.server import served_model
from people_relation.settings import Settings


@contextmanager
def endpoint(
    settings: Settings, url: str | None = None, profile_name: str | None = None, model: str | None = None
) -> Iterator[Endpoint]:
    """The server at ``url`` (its API key from the ``serve.api_key_env`` variable when set),
    or, without a URL, a vLLM server started on the profile's ``model`` (default
    ``serve.model``) for the ``with`` block and always stopped afterwards."""
    if url:
        yield Endpoint(url, os.environ.get(settings.serve.api_key_env) or None, settings.serve.served_model_name)
        return
    arm = resolve_arm(settings, profile_name)
    model_dir = arm.model(model or settings.serve.model)
    print(f"Starting a vLLM server on {model_dir} (about a minute on CPU)...", file=sys.stderr, flush=True)
    with (
        tempfile.TemporaryDirectory() as tmp,
        served_model(settings.serve, arm.profile, model_dir, Path(tmp) / "server.log", arm.name) as server,
    ):
        yield Endpoint(server.base_url, server.api_key, server.model)


def failed(err: Exception) -> int:
    """The exit status of an application stopped by ``err`` (the contract of
    :mod:`people_relation.errors`), its message printed; an error that is not one of ours is
    raised again, so its traceback shows."""
    status = exit_status(err)
    if status is None:
        raise err
    print(f"error: {err}", file=sys.stderr)
    return status
