"""Start vLLM's OpenAI-compatible server, wait until it is healthy, and always stop it.

The server runs in its own session (process group) with a private ``TMPDIR`` for its IPC
socket files. Leaving the ``with`` block for any reason (success, an error, Ctrl-C,
SIGTERM) stops the whole group: SIGTERM, then SIGKILL after ``stop_timeout_s``, and
removes the private ``TMPDIR``. The server also gets SIGTERM if this process dies
(``PR_SET_PDEATHSIG``), so a killed pipeline leaves no orphan behind.
"""

from __future__ import annotations

import logging
import os
import shlex
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from people_relation.errors import ServerError
from people_relation.infra.processes import die_with_parent, pick_port
from people_relation.settings import Profile, Serve

log = logging.getLogger(__name__)

LOG_TAIL_LINES = 40


@dataclass(frozen=True)
class Server:
    base_url: str  # e.g. http://127.0.0.1:8011/v1
    model: str  # the served model name requests must use
    api_key: str | None
    log_path: Path
    startup_s: float
    pid: int
    alive: Callable[[], bool]


def log_tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    if not path.is_file():
        return "(no server log)"
    return "\n".join(path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])


def live_group_members(pgid: int) -> list[int]:
    """Processes of group ``pgid`` that are still running (zombies awaiting a reaper are not)."""
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        state, group = fields[0], int(fields[2])
        if group == pgid and state not in ("Z", "X"):
            members.append(int(stat.parent.name))
    return members


def stop_group(proc: subprocess.Popen, timeout_s: float) -> None:
    """SIGTERM the server's process group, then SIGKILL whatever is left after ``timeout_s``."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    try:
        proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        log.warning("vLLM server did not stop within %.0fs; killing it", timeout_s)
    # children (vLLM's engine core) may outlive the main process: kill the group for sure
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()
    deadline = time.monotonic() + timeout_s
    while (left := live_group_members(proc.pid)) and time.monotonic() < deadline:
        time.sleep(0.1)
    if left:
        log.warning("vLLM server processes %s did not exit after SIGKILL", left)


@contextmanager
def _sigterm_as_exit() -> Iterator[None]:
    """Turn SIGTERM into SystemExit while the server runs, so ``finally`` blocks stop it."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):  # noqa: ARG001
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def wait_healthy(
    proc: subprocess.Popen, health_url: str, log_path: Path, timeout_s: float, poll_s: float = 1.0
) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        if proc.poll() is not None:
            raise ServerError(
                f"the vLLM server exited with status {proc.returncode} while starting; "
                f"its log ({log_path}) ends with:\n{log_tail(log_path)}"
            )
        try:
            if httpx.get(health_url, timeout=5).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise ServerError(
                f"the vLLM server did not answer {health_url} within {timeout_s:.0f}s "
                f"(serve.startup_timeout_s); its log ({log_path}) ends with:\n{log_tail(log_path)}"
            )
        time.sleep(poll_s)


@contextmanager
def vllm_server(
    command: list[str],
    env: dict[str, str],
    host: str,
    port: int,
    served_model_name: str,
    log_path: Path,
    startup_timeout_s: float,
    stop_timeout_s: float,
    api_key: str | None = None,
    cwd: Path | None = None,
) -> Iterator[Server]:
    """Run ``command`` (a vLLM server listening on ``host:port``) for the ``with`` block."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    tmp_dir = Path(tempfile.mkdtemp(prefix="vllm-tmp-"))
    full_env = os.environ | env | {"TMPDIR": str(tmp_dir)}
    log.info("Starting the vLLM server on %s:%d (log: %s): %s", host, port, log_path, shlex.join(command))
    start = time.monotonic()
    with _sigterm_as_exit(), log_path.open("w", encoding="utf-8") as log_file:
        proc = subprocess.Popen(
            command,
            cwd=cwd,
            env=full_env,
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=die_with_parent,
        )
        try:
            wait_healthy(proc, f"http://{host}:{port}/health", log_path, startup_timeout_s)
            startup = time.monotonic() - start
            log.info("vLLM server healthy after %.1fs (pid %d)", startup, proc.pid)
            yield Server(
                base_url=f"http://{host}:{port}/v1",
                model=served_model_name,
                api_key=api_key,
                log_path=log_path,
                startup_s=startup,
                pid=proc.pid,
                alive=lambda: proc.poll() is None,
            )
        finally:
            stop_group(proc, stop_timeout_s)
            shutil.rmtree(tmp_dir, ignore_errors=True)
            log.info("vLLM server stopped (status %s)", proc.returncode)


@contextmanager
def served_model(
    serve: Serve, prof: Profile, model: Path, log_path: Path, profile_name: str, python: str | None = None
) -> Iterator[Server]:
    """The model in ``model`` (a trained folder, or a hub id) of profile ``profile_name``,
    served as ``serve`` (host, port, key, timeouts) and the profile's ``serve`` block say."""
    import sys

    from people_relation.infra.io import PROJECT_ROOT, project_path
    from people_relation.infra.paths import tokenizer_dir
    from people_relation.serving.commands import serve_command, serve_env

    local = model.is_absolute() or model.exists()
    if local and not (model / "config.json").is_file():
        raise ServerError(
            f"no trained model in {model}: run the train step first (`dvc repro train@<run>`, or "
            f"`python -m flows.train --profile {profile_name}`)"
        )
    port = pick_port(serve.host, serve.port)
    api_key = os.environ.get(serve.api_key_env) or None
    tok = tokenizer_dir(prof, model) if local else None
    command = serve_command(
        prof.serve,
        str(model),
        str(tok) if tok else None,
        serve.host,
        port,
        serve.served_model_name,
        python or sys.executable,
    )
    cache = project_path(serve.cache_dir)
    cache.mkdir(parents=True, exist_ok=True)
    with vllm_server(
        command,
        serve_env(prof.serve, str(cache), api_key, serve.limits),
        serve.host,
        port,
        serve.served_model_name,
        log_path,
        serve.startup_timeout_s,
        serve.stop_timeout_s,
        api_key=api_key,
        cwd=PROJECT_ROOT,
    ) as server:
        yield server
