"""Every DVC stage lists, as deps, exactly the project code its command can run.

A stage whose code changed but is not a dep is not re-run by ``dvc repro``: a stale result
that looks right. The code a stage can run is found from the source: the stage command's
module, every project module it imports (at the top or inside a function), every module it
starts by name (``python -m people_relation.training.grpo_process``), and so on transitively; a package's
``__init__`` counts when it runs code.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
import yaml

PACKAGES = ("people_relation", "steps", "flows")
MODULE_NAME = re.compile(rf"^(?:{'|'.join(PACKAGES)})(?:\.\w+)+$")
COMMAND = re.compile(r"^python -m ((?:\w+\.)*\w+)(?: --run (?:\$\{key\}|\w+))?$")  # a stage, or one per run


def module_file(root: Path, name: str) -> Path | None:
    path = root / Path(*name.split("."))
    for candidate in (path.with_suffix(".py"), path / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def runs_code(path: Path) -> bool:
    """A module with more than a docstring."""
    body = ast.parse(path.read_text(encoding="utf-8")).body
    return any(not (isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant)) for n in body)


def referenced(path: Path, name: str) -> set[str]:
    """Dotted names a module imports or starts by name; only project modules are kept later."""
    package = name.rsplit(".", 1)[0] if path.name != "__init__.py" else name
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parent, base] if base else parent)
            names.add(base)
            names |= {f"{base}.{alias.name}" for alias in node.names}
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and MODULE_NAME.match(node.value):
            names.add(node.value)  # e.g. ["python", "-m", "people_relation.training.grpo_process", ...]
    return names


def code_of(root: Path, start: str) -> set[str]:
    """Project files (relative to ``root``) that running module ``start`` can execute."""
    seen: set[str] = set()
    todo = [start]
    while todo:
        name = todo.pop()
        if name in seen or name.split(".")[0] not in PACKAGES:
            continue
        seen.add(name)
        parts = name.split(".")
        todo += [".".join(parts[:i]) for i in range(1, len(parts))]  # importing a.b runs a/__init__
        path = module_file(root, name)
        if path is not None:
            todo += referenced(path, name)
    files = {module_file(root, n) for n in seen}
    return {p.relative_to(root).as_posix() for p in files if p is not None and runs_code(p)}


def stage_commands(root: Path) -> dict[str, tuple[str, list[str]]]:
    stages = yaml.safe_load((root / "dvc.yaml").read_text(encoding="utf-8"))["stages"]
    out = {}
    for name, stage in stages.items():
        stage = stage.get("do", stage)  # a stage run for each of params.yaml's runs (foreach)
        match = COMMAND.match(stage["cmd"])
        assert match, f"dvc.yaml: stage {name}: expected 'python -m MODULE', got {stage['cmd']!r}"
        deps = [d for d in stage.get("deps", []) if "${" not in d]
        out[name] = (match.group(1), deps)
    return out


def covered(path: str, deps: list[str]) -> bool:
    return any(path == d or path.startswith(d.rstrip("/") + "/") for d in deps)


def drift(root: Path) -> dict[str, dict[str, list[str]]]:
    """Per stage: project code it runs but does not list, and listed code it cannot run."""
    found = {}
    for name, (module, deps) in stage_commands(root).items():
        code = code_of(root, module)
        missing = sorted(p for p in code if not covered(p, deps))
        listed = [d for d in deps if d.endswith(".py")]
        unused = sorted(d for d in listed if d not in code)
        if missing or unused:
            found[name] = {"missing": missing, "unused": unused}
    return found


def test_every_stage_depends_on_exactly_the_code_it_runs(project_root):
    assert drift(project_root) == {}, (
        "dvc.yaml deps differ from the code each stage runs (add what is missing, drop what is unused)"
    )


def test_the_check_finds_a_removed_dep_and_a_new_import(project_root, tmp_path):
    for package in PACKAGES:
        for source in (project_root / package).rglob("*.py"):
            copy = tmp_path / source.relative_to(project_root)
            copy.parent.mkdir(parents=True, exist_ok=True)
            copy.write_text(source.read_text(encoding="utf-8"), encoding="utf-8")
    dvc = yaml.safe_load((project_root / "dvc.yaml").read_text(encoding="utf-8"))
    dvc["stages"]["train"]["do"]["deps"].remove("people_relation/serving/server.py")
    (tmp_path / "dvc.yaml").write_text(yaml.safe_dump(dvc), encoding="utf-8")
    report = tmp_path / "flows" / "report.py"
    late_import = "\n\ndef late():\n    import people_relation.training.warmup\n"
    report.write_text(report.read_text(encoding="utf-8") + late_import, encoding="utf-8")
    found = drift(tmp_path)
    assert "people_relation/serving/server.py" in found["train"]["missing"]
    assert "people_relation/training/warmup.py" in found["report"]["missing"]
    assert set(found) == {"train", "report"}


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("import people_relation.infra.io\n", {"people_relation.infra.io"}),
        ("from people_relation.infra import io\n", {"people_relation.infra", "people_relation.infra.io"}),
        ("from .io import x\n", {"people_relation.infra.io", "people_relation.infra.io.x"}),
        ("from ..labels import LABELS\n", {"people_relation.labels", "people_relation.labels.LABELS"}),
        ("def f():\n    from people_relation.labels import LABELS\n", {"people_relation.labels"}),
        (
            "CMD = ['python', '-m', 'people_relation.training.grpo_process']\n",
            {"people_relation.training.grpo_process"},
        ),
    ],
)
def test_references_are_found_anywhere_in_a_module(tmp_path, source, expected):
    path = tmp_path / "mod.py"
    path.write_text(source, encoding="utf-8")
    assert expected <= referenced(path, "people_relation.infra.mod")
