"""The layers hold: every import between the project's packages runs the allowed way, and
only the task file knows the task.

- the core (``people_relation/*.py``) imports only the core;
- ``people_relation.infra`` imports the core and itself;
- ``people_relation.training`` and ``people_relation.serving`` import the core, infra and
  themselves, never each other, except for the named edges in ``SIDEWAYS``;
- the library never imports ``steps``, ``flows`` or ``apps``;
- ``steps`` import the library, never ``flows`` or ``apps``;
- a flow whose stage has a step module (``steps/<stage>.py``) reaches training and serving
  through it; other flows, and ``apps``, may import the library directly; nothing imports
  ``apps``, and only ``flows`` import ``flows``.

Imports are read from the source (inside functions too), as ``tests/test_dvc_deps.py`` reads
them, so a lazy import counts like any other.
"""

from __future__ import annotations

import ast
from pathlib import Path

from people_relation.infra.io import PROJECT_ROOT

PACKAGES = ("people_relation", "steps", "flows", "apps")
# Sideways edges with a reason: the registered MLflow model loads and generates with the
# training code's loader, exactly as the model was validated.
SIDEWAYS = {
    ("people_relation.serving.pyfunc", "people_relation.training.models"),
    ("people_relation.serving.pyfunc", "people_relation.training.generation"),
}


def layer(module: str) -> str:
    """``core``, ``infra``, ``training``, ``serving`` for the library; else the package name."""
    parts = module.split(".")
    if parts[0] != "people_relation":
        return parts[0]
    if len(parts) > 1 and parts[1] in ("infra", "training", "serving"):
        return parts[1]
    return "core"


ALLOWED = {
    "core": {"core"},
    "infra": {"core", "infra"},
    "training": {"core", "infra", "training"},
    "serving": {"core", "infra", "serving"},
    "steps": {"core", "infra", "training", "serving", "steps"},
    "apps": {"core", "infra", "training", "serving", "apps"},
}


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def project_imports(path: Path, root: Path) -> list[tuple[str, int]]:
    """(module, line) of every import of a project package in ``path``."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        else:
            continue
        found += [(name, node.lineno) for name in names if name.split(".")[0] in PACKAGES]
    return found


def wrong_arrows(root: Path) -> list[str]:
    """Every import under ``root`` that runs against the layers, as ``file:line: a -> b (why)``."""
    problems = []
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            source = module_name(path, root)
            src = layer(source)
            for target, line in project_imports(path, root):
                dst = layer(target)
                if (source, target) in SIDEWAYS:
                    continue
                if src == "flows":
                    stage = source.split(".")[1] if "." in source else ""
                    through_task = (root / "steps" / f"{stage}.py").is_file()
                    ok = dst in {"core", "infra", "steps", "flows"} or (
                        dst in {"training", "serving"} and not through_task
                    )
                    why = f"steps/{stage}.py exists: reach {dst} through it" if through_task else "not allowed"
                else:
                    ok = dst in ALLOWED[src]
                    why = f"{src} may import {', '.join(sorted(ALLOWED[src]))}"
                if not ok:
                    problems.append(f"{path.relative_to(root)}:{line}: {source} -> {target} ({why})")
    return problems


def test_every_import_runs_the_allowed_way():
    problems = wrong_arrows(PROJECT_ROOT)
    assert not problems, "imports against the layers:\n" + "\n".join(problems)


def test_a_wrong_arrow_is_found(tmp_path):
    """The check fails on each kind of wrong arrow, named with its file and line."""
    files = {
        "people_relation/__init__.py": "",
        "people_relation/labels.py": "from people_relation.infra.io import PROJECT_ROOT\n",
        "people_relation/infra/__init__.py": "",
        "people_relation/infra/io.py": "def f():\n    from people_relation.training.models import x\n",
        "people_relation/training/__init__.py": "",
        "people_relation/training/models.py": "import people_relation.serving.server\n",
        "people_relation/serving/__init__.py": "",
        "people_relation/serving/server.py": "from people_relation.labels import LABELS\n",
        "steps/__init__.py": "",
        "steps/train.py": "from flows.train import train_flow\n",
        "flows/__init__.py": "",
        "flows/train.py": "from people_relation.training.models import x\nfrom steps.train import y\n",
        "flows/rehearse.py": "from people_relation.training.models import x\n",
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text, encoding="utf-8")
    problems = wrong_arrows(tmp_path)
    assert [p.split(" (")[0] for p in problems] == [
        "people_relation/infra/io.py:2: people_relation.infra.io -> people_relation.training.models",
        "people_relation/labels.py:1: people_relation.labels -> people_relation.infra.io",
        "people_relation/training/models.py:1: people_relation.training.models -> people_relation.serving.server",
        "steps/train.py:1: steps.train -> flows.train",
        "flows/train.py:1: flows.train -> people_relation.training.models",
    ], problems
    assert "steps/train.py exists" in problems[-1]


# What only the task file (and its prior's rules) may know: the relation task's labels, its
# input fields besides the generic first one, and its prompt's words.
TASK_FILE = "tasks/relation.yaml"
PRIOR_MODULES = {"people_relation/keywords.py", "people_relation/priors.py"}


def task_words(root: Path) -> set[str]:
    from people_relation.task import load_task

    task = load_task(root / TASK_FILE)
    fields = [f for f in task.fields if f != task.fields[0]]  # "text" is a word of every task
    return {*task.labels, *fields, "人物1", "人物2", "文本：", task.prompt.prefill.split("\n")[0]}


def code_strings(path: Path) -> list[tuple[str, int]]:
    """String constants of ``path`` that are not documentation (a string standing alone as a
    statement: a docstring, or an attribute's docstring), with their lines."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    docstrings = {
        id(node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str)
    }
    return [
        (node.value, node.lineno)
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings
    ]


def task_knowledge(root: Path) -> list[str]:
    """Every place outside the task file and its prior's rules that spells a label, a field
    or a piece of the prompt, or imports the prior's rules."""
    words = task_words(root)
    found = []
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            name = path.relative_to(root).as_posix()
            if name in PRIOR_MODULES:
                continue
            for value, line in code_strings(path):
                hits = sorted(w for w in words if w in value)
                if hits:
                    found.append(f"{name}:{line}: spells {', '.join(hits)}")
            for target, line in project_imports(path, root):
                if target == "people_relation.keywords":
                    found.append(f"{name}:{line}: imports the keyword rules (reach them through the task's prior)")
    return found


def test_only_the_task_knows_its_labels_fields_and_prompt():
    problems = task_knowledge(PROJECT_ROOT)
    assert not problems, "task-specific knowledge outside tasks/ (move it into the task file):\n" + "\n".join(problems)


def test_task_knowledge_is_found(tmp_path):
    (tmp_path / "tasks").mkdir()
    (tmp_path / TASK_FILE).write_text((PROJECT_ROOT / TASK_FILE).read_text(encoding="utf-8"), encoding="utf-8")
    files = {
        "people_relation/__init__.py": "",
        "people_relation/metrics.py": '"""Over 不知道 (a docstring may say so)."""\nNONE = "不知道"\n',
        "steps/__init__.py": "",
        "steps/baseline.py": "from people_relation.keywords import explain_pair\nCOLUMNS = ('text', 'people1')\n",
        "flows/__init__.py": "",
        "apps/__init__.py": "",
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text, encoding="utf-8")
    assert task_knowledge(tmp_path) == [
        "people_relation/metrics.py:2: spells 不知道",
        "steps/baseline.py:2: spells people1",
        "steps/baseline.py:1: imports the keyword rules (reach them through the task's prior)",
    ]
