"""The pipeline flow's stage task against real DVC projects and a real Prefect server:
up-to-date stages are skipped, transient failures (exit 75) are retried, others are not."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration


def dvc_project(root: Path, command: str) -> Path:
    """A one-stage DVC project whose stage runs ``command`` (a Python snippet)."""
    root.mkdir()
    subprocess.run(["git", "init", "-q"], cwd=root, check=True)
    subprocess.run([sys.executable, "-m", "dvc", "init", "-q"], cwd=root, check=True)
    (root / "step.py").write_text(command, encoding="utf-8")
    (root / "dvc.yaml").write_text(
        "stages:\n  step:\n    cmd: python step.py\n    deps: [step.py]\n    outs: [out.txt]\n", encoding="utf-8"
    )
    return root


def env() -> dict[str, str]:
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    return os.environ | {"PATH": path, "DVC_NO_ANALYTICS": "1"}


# fails with `code` on the first `fail_times` attempts (counted in attempts.txt), then succeeds
FLAKY = """
from pathlib import Path
count = Path("attempts.txt")
n = int(count.read_text()) + 1 if count.exists() else 1
count.write_text(str(n))
if n <= {fail_times}:
    raise SystemExit({code})
Path("out.txt").write_text("done")
"""


def attempts(root: Path) -> int:
    return int((root / "attempts.txt").read_text())


def test_a_transient_failure_is_retried_then_the_stage_is_current(prefect_api, tmp_path):
    from steps.pipeline import repro_stage

    root = dvc_project(tmp_path / "p", FLAKY.format(fail_times=1, code=75))
    task = repro_stage.with_options(retries=2, retry_delay_seconds=0)
    assert task("step", False, env(), root) == "ran"
    assert attempts(root) == 2
    assert task("step", False, env(), root) == "skipped"  # dvc.lock says it is current
    assert attempts(root) == 2


def test_a_permanent_failure_is_not_retried(prefect_api, tmp_path):
    from steps.pipeline import StageFailed, repro_stage

    root = dvc_project(tmp_path / "p", FLAKY.format(fail_times=5, code=1))
    with pytest.raises(StageFailed, match="exit status 1; retrying will not help") as err:
        repro_stage.with_options(retries=3, retry_delay_seconds=0)("step", False, env(), root)
    assert err.value.exit_code == 1
    assert attempts(root) == 1


def test_the_pipeline_command_refuses_an_unknown_stage_with_status_2(prefect_api, project_root):
    """The command, through a real Prefect flow run: what it was asked for is refused before any
    stage runs, with the contract's status for refused input."""
    command = [sys.executable, "-m", "flows.pipeline", "--target", "trian"]
    done = subprocess.run(
        command, cwd=project_root, env=env() | {"PREFECT_API_URL": prefect_api}, capture_output=True, text=True
    )
    assert done.returncode == 2, done.stderr[-3000:]
    stages = "['prepare@relation', 'prepare@sentiment', 'split@relation', 'split@sentiment', 'corpus', 'pretrain'"
    assert f"error: unknown stage(s) ['trian']; dvc.yaml has {stages}" in done.stderr
