"""Run a child process and stream its output line by line as it comes."""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path


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
