from __future__ import annotations

import os

# Under `pytest -n N` every worker, and every process it starts (stages, GRPO, servers),
# gets its share of the cores for its math threads: with more threads than cores, torch's
# OpenMP threads spin waiting for each other and an in-process training runs 3x slower.
if workers := int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "0")):
    for variable in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(variable, str(max(1, (os.cpu_count() or 1) // workers)))
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from people_relation.dataset import read_csv_file
from people_relation.infra.io import PROJECT_ROOT, project_path, read_project_params
from people_relation.runtime import configure

configure()  # before any test imports Prefect or MLflow: no telemetry from the tools the tests start

# Under `pytest -n 2` (`make test`) each module runs whole on one worker, so its
# module-scoped fixtures are built once; the modules that share a session fixture too
# expensive to build twice run on the same worker as one group.
GROUPS = {
    "test_serving.py": "held-server",  # the held vLLM server
    "test_serving_api.py": "held-server",
    "test_demo.py": "held-server",
}
# The longest groups first, so that both workers finish together: a group starts on the
# first free worker, in this order, then everything else in file order.
FIRST = (
    "test_e2e.py",
    "test_rehearsal_machines.py",
    "test_rehearsal.py",
    "test_rehearsal_lora.py",
    "test_serving.py",
    "test_serving_api.py",
    "test_demo.py",
    "test_train.py",
)


def pytest_collection_modifyitems(config, items):
    """Every test without ``integration`` or ``e2e`` is a ``unit`` test; the long modules run first."""
    for item in items:
        if not any(item.get_closest_marker(m) for m in ("integration", "e2e")):
            item.add_marker(pytest.mark.unit)
    rank = {name: i for i, name in enumerate(FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(FIRST)))


def pytest_xdist_make_scheduler(config, log):
    """Work units of whole modules, or of the groups in ``GROUPS``, in collection order."""
    from xdist.scheduler import LoadScopeScheduling

    class ModulesAndGroups(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            module = nodeid.split("::", 1)[0]
            return GROUPS.get(module.rsplit("/", 1)[-1], module)

    config.option.loadscopereorder = False  # FIRST decides, not the number of tests in a unit
    return ModulesAndGroups(config, log)


@pytest.fixture(scope="session")
def params() -> dict:
    return read_project_params()


@pytest.fixture(scope="session")
def settings():
    from people_relation.settings import parse_settings

    return parse_settings(read_project_params())


@pytest.fixture(scope="session")
def task(settings):
    """The relation task, as params.yaml names it (tasks/relation.yaml)."""
    return settings.task


@pytest.fixture(scope="session")
def data_dir(settings) -> Path:
    folder = project_path(settings.data.local_dir or settings.task.data.local_dir)
    if not (folder / "train.csv").is_file():
        pytest.fail(f"the dataset is not at {folder} (data.local_dir of the task file); the tests need it")
    return folder


@pytest.fixture(scope="session")
def real_data(data_dir, task):
    return {split: read_csv_file(data_dir / f"{split}.csv", split, task)[0] for split in ("train", "test")}


def require(missing: list[str], what: str) -> None:
    """Skip the test when this machine lacks a prerequisite (``missing`` names each), with the
    reason in pytest's summary. ``make test`` installs them as root (scripts/setup-test.sh), so
    under ``CI=true`` a missing one is a failure, never a silent pass."""
    if not missing:
        return
    reason = f"{what} needs {', '.join(missing)} (make test installs them as root: scripts/setup-test.sh)"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"CI=true: {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def project_root() -> Path:
    return PROJECT_ROOT


@pytest.fixture(scope="session")
def prefect_api():
    """A real Prefect server (temporary database) for the whole session; yields its API URL."""
    from prefect.settings import PREFECT_API_URL
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=90):
        yield PREFECT_API_URL.value()


TINY_ARCH = {
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_layers": 2,
    "num_heads": 2,
    "num_kv_heads": 1,
    "max_positions": 512,
}


def shrink_cpu_profile(params: dict, profile: str = "cpu") -> None:
    """The smallest configuration of a CPU ``profile``, made the one the pipeline trains (the
    first run's, ``runs.relation.profile``): a tiny model, one warm-up epoch, a few GRPO steps."""
    params["runs"]["relation"]["profile"] = profile
    cpu = params["profiles"][profile]  # its own values: what it takes from a base is overlaid
    if cpu.setdefault("model", {}).get("source") != "pretrained":  # the pretrained one's shape is pretrain's
        cpu["model"]["arch"] = dict(TINY_ARCH)
    cpu.setdefault("warmup", {}).update({"epochs": 1, "log_every": 50})
    cpu.setdefault("grpo", {}).update(
        {
            "max_steps": 4,
            "save_steps": 2,
            "completions_every": 2,
            "max_completion_length": 32,
            "eval_steps": 2,
            "eval_rows": 16,
            "eval_prompts_per_device": 4,
        }
    )
    cpu.setdefault("validation", {})["max_new_tokens"] = 32


def shrink_pretraining(params: dict) -> None:
    """The smallest pretraining: the tiny model on a slice of the corpus, a few steps."""
    params["pretrain"] |= {
        "arch": dict(TINY_ARCH),
        "max_train_chars": 20000,
        "passes": 1,
        "block_size": 64,
        "batch_size": 16,
        "eval_every": 10,
        "save_every": 10,
        "log_every": 10,
    }


def write_sandbox_params(params: dict, root: Path, data_dir: Path, **overrides) -> Path:
    """Project params with every output, and the MLflow store, inside ``root``.

    ``overrides`` use ``__`` between keys: ``data__local_dir="/x"`` sets ``data.local_dir``.
    """
    import yaml

    from people_relation.settings import reroot_outputs

    p = reroot_outputs(params, root)  # every folder a stage writes, from the settings' one list
    p["data"]["local_dir"] = str(data_dir)
    # vLLM's cache stays the project's (.cache/vllm, git-ignored): its model-inspection results
    # save ~20 s on every server start after the first, for the tests as for a user
    p["serve"]["cache_dir"] = str(PROJECT_ROOT / ".cache" / "vllm")
    p["tracking"]["uri"] = f"sqlite:///{root / 'mlflow.db'}"
    for dotted, value in overrides.items():
        node = p
        *parents, leaf = dotted.split("__")
        for part in parents:
            node = node[part]
        node[leaf] = value
    path = root / "params.yaml"
    path.write_text(yaml.safe_dump(p, allow_unicode=True), encoding="utf-8")
    return path


def run_step(step: str, params_file: Path, env: dict[str, str], timeout: float = 300):
    """``python -m flows.<step> --params-file FILE`` from the project root, output captured."""
    import subprocess
    import sys

    return subprocess.run(
        [sys.executable, "-m", f"flows.{step}", "--params-file", str(params_file)],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture
def sandbox_params(tmp_path, params, data_dir):
    return lambda **overrides: write_sandbox_params(params, tmp_path, data_dir, **overrides)


# -- the tiny model and the published split, built once a session -----------------------------


@pytest.fixture(scope="session")
def published_split(tmp_path_factory, real_data, settings) -> Path:
    """The split of params.yaml's settings (the published 8:2 one, with its validation rows)
    of the dataset's CSV files, written once: train, validation and test JSONL."""
    from people_relation.infra.data import write_examples
    from people_relation.split import make_splits

    split = settings.split
    folder = tmp_path_factory.mktemp("split")
    fractions = split.test_fraction, split.validation_fraction
    splits = make_splits(real_data["train"], real_data["test"], split.strategy, *fractions, split.seed)
    for name, rows in splits.items():
        write_examples(folder / f"{name}.jsonl", rows)
    return folder


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory, published_split, task) -> Path:
    """An untrained tiny Qwen2 (``TINY_ARCH``) with the project's tokenizer built from the
    published split's training rows, saved once: every test that needs *a* model and not what
    it learned (serving, the API, the demo, the registry, GRPO from scratch) copies this one."""
    from people_relation.infra.data import read_examples
    from people_relation.settings import Arch
    from people_relation.training.models import build_scratch_qwen2, save_model
    from people_relation.training.tokenizer import build_tokenizer

    rows = read_examples(published_split / "train.jsonl")
    tokenizer = build_tokenizer(task, [v for e in rows for v in e.key])
    folder = tmp_path_factory.mktemp("tiny") / "model"
    save_model(build_scratch_qwen2(tokenizer, Arch(**TINY_ARCH), seed=0), tokenizer, folder)
    return folder


def task_data_dir(params: dict) -> Path:
    """The folder of the first run's data: params.yaml's data.local_dir, else its task file's."""
    from people_relation.settings import parse_settings

    settings = parse_settings(params)
    return project_path(settings.data.local_dir or settings.task.data.local_dir)


def served_sandbox(root: Path, params: dict, published_split: Path, tiny_model: Path, **overrides) -> Path:
    """A sandbox at ``root`` whose ``cpu`` profile (smallest settings) has the published split
    and the tiny model published as both warm-up and GRPO model (serving does not care what
    the weights learned); returns its params file."""
    import copy
    import shutil

    p = copy.deepcopy(params)
    shrink_cpu_profile(p)
    params_file = write_sandbox_params(p, root, task_data_dir(p), **overrides)
    shutil.copytree(published_split, root / "data" / "split")
    for stage in ("warmup", "grpo"):
        shutil.copytree(tiny_model, root / "models" / "cpu" / stage)
    return params_file


# -- one vLLM server for the serving, API and demo tests ---------------------------------------

SERVE_KEY = "test-key"  # the held server's API key (serve.api_key_env)


@dataclass(frozen=True)
class HeldServer:
    """``python -m flows.serve --hold`` on a served sandbox, as a user starts it: its URL, key,
    sandbox and settings, and the process (stopped with Ctrl-C when the session ends)."""

    base_url: str
    api_key: str
    model: str
    root: Path
    params_file: Path
    settings: object
    model_dir: Path
    proc: subprocess.Popen
    log: Path

    def alive(self) -> bool:
        """The command still runs and the server says it is healthy."""
        import httpx

        try:
            healthy = httpx.get(self.base_url.removesuffix("/v1") + "/health", timeout=10).status_code == 200
        except httpx.HTTPError:
            healthy = False
        return self.proc.poll() is None and healthy


def vllm_tmp_dirs() -> set[str]:
    """vLLM's private temporary folders (IPC sockets) that exist now."""
    import tempfile

    return {p.name for p in Path(tempfile.gettempdir()).glob("vllm-tmp-*")}


def server_pids(marker: str) -> list[int]:
    """Processes whose command line holds ``marker`` (a model folder: its servers)."""
    out = subprocess.run(["pgrep", "-f", marker], capture_output=True, text=True)
    return [int(pid) for pid in out.stdout.split()]


@pytest.fixture(scope="session")
def held_server(tmp_path_factory, params, published_split, tiny_model, prefect_api):
    """One vLLM server for the session: ``flows.serve --hold`` with an API key, on the tiny
    model. At the end it gets Ctrl-C, and the teardown checks the stop is clean: exit 0, no
    server process left, vLLM's private temporary folder removed, the pipeline's serve report
    untouched and the server's log kept beside the checkpoints."""
    from people_relation.infra.io import read_settings

    root = tmp_path_factory.mktemp("held")
    params_file = served_sandbox(root, params, published_split, tiny_model)
    model_dir = root / "models" / "cpu" / "grpo"
    key_env = params["serve"]["api_key_env"]  # the variable whose value the server requires
    env = os.environ | {"PREFECT_API_URL": prefect_api, "PYTHONUNBUFFERED": "1", key_env: SERVE_KEY}
    before = vllm_tmp_dirs()
    log = root / "serve-hold.log"
    with log.open("w", encoding="utf-8") as out:  # a file: a full pipe would block the server
        proc = subprocess.Popen(
            [sys.executable, "-m", "flows.serve", "--params-file", str(params_file), "--hold"],
            cwd=PROJECT_ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
            # as from a terminal: a test run started in the background (`cmd &` in a script)
            # inherits SIGINT ignored, and so would the server, which then never sees Ctrl-C
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )
    try:
        url = wait_for_line(log, r"Serving 'people-relation' at (http://127\.0\.0\.1:\d+/v1)", proc, 600)[1]
        yield HeldServer(
            url, SERVE_KEY, "people-relation", root, params_file, read_settings(params_file), model_dir, proc, log
        )
    finally:
        proc.send_signal(signal.SIGINT)  # Ctrl-C
        try:
            proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise AssertionError(f"flows.serve did not exit within 120 s of Ctrl-C:\n{tail(log)}") from None
    assert proc.returncode == 0, tail(log)
    assert not server_pids(str(model_dir)), "the server outlived Ctrl-C"
    assert vllm_tmp_dirs() <= before  # the private TMPDIR with the IPC sockets is removed
    # serving for clients leaves the pipeline's outputs alone; its log is kept beside the checkpoints
    assert not (root / "reports" / "serve").exists()
    server_log = (root / "checkpoints" / "serve" / "cpu" / "server.log").read_text(encoding="utf-8")
    assert "Application startup complete" in server_log


def tail(log: Path, chars: int = 3000) -> str:
    return log.read_text(encoding="utf-8", errors="replace")[-chars:]


def wait_for_line(log: Path, pattern: str, proc: subprocess.Popen, timeout: float) -> re.Match:
    """The first match of ``pattern`` in the ``log`` that ``proc`` writes, waited for."""
    deadline = time.monotonic() + timeout
    while True:
        if match := re.search(pattern, log.read_text(encoding="utf-8", errors="replace")):
            return match
        assert proc.poll() is None, f"ended with {proc.returncode} before {pattern!r}:\n{tail(log)}"
        assert time.monotonic() < deadline, f"no {pattern!r} within {timeout}s:\n{tail(log)}"
        time.sleep(0.5)
