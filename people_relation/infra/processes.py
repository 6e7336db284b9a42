"""Child processes: run one and stream its output line by line, tie its life to ours, and
find a free port for a server it will start."""

from __future__ import annotations

import ctypes
import signal
import socket
import subprocess
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from people_relation.errors import ServerError

PR_SET_PDEATHSIG = 1
# loaded here, not in a forked child (dlopen there could wait on a lock another thread held)
try:
    _LIBC = ctypes.CDLL("libc.so.6", use_errno=True)
except OSError:  # not glibc Linux: no parent-death signal
    _LIBC = None


@dataclass(frozen=True)
class Finished:
    code: int
    tail: list[str]  # the last lines it printed, for an error message


def stream(
    command: Sequence[str],
    on_line: Callable[[str], None],
    cwd: Path,
    env: Mapping[str, str],
    keep: int = 40,
    preexec_fn: Callable[[], None] | None = None,
) -> Finished:
    """Run ``command`` (stdout and stderr together), hand each line to ``on_line`` the moment
    it is printed, and return the exit status with the last ``keep`` lines."""
    tail: list[str] = []
    with subprocess.Popen(
        list(command),
        cwd=cwd,
        env=dict(env),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        preexec_fn=preexec_fn,
    ) as proc:
        assert proc.stdout is not None
        for raw in proc.stdout:
            line = raw.rstrip()
            tail = (tail + [line])[-keep:]
            on_line(line)
        code = proc.wait()
    return Finished(code, tail)


def pick_port(host: str, port: int, setting: str = "serve.port") -> int:
    """``port`` if it is free on ``host``; a free port chosen by the OS when ``port`` is 0.
    ``setting`` names the parameter to change when it is taken."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError as err:
            hint = ", or to 0 to let the system pick one" if setting == "serve.port" else ""
            raise ServerError(
                f"port {port} on {host} is in use ({err.strerror}); set {setting} to a free port{hint}"
            ) from err
        return sock.getsockname()[1]


def die_with_parent() -> None:
    """Get SIGTERM when the parent process dies (Linux), so no orphan outlives a killed run.

    Called in a child before exec, or first thing in a process whose launcher may be killed
    (a training rank: torch's launcher puts each rank in a session of its own, so killing
    the launcher's process group does not reach it)."""
    if _LIBC is not None:
        _LIBC.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
