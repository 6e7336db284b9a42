from __future__ import annotations

from pathlib import Path

import pytest

from people_relation.dataset import read_csv_file
from people_relation.infra.io import PROJECT_ROOT, project_path, read_project_params
from people_relation.runtime import configure

configure()  # before any test imports Prefect or MLflow: no telemetry from the tools the tests start


@pytest.fixture(scope="session")
def params() -> dict:
    return read_project_params()


@pytest.fixture(scope="session")
def settings():
    from people_relation.settings import parse_settings

    return parse_settings(read_project_params())


@pytest.fixture(scope="session")
def data_dir(settings) -> Path:
    folder = project_path(settings.data.local_dir)
    if not (folder / "train.csv").is_file():
        pytest.fail(f"the dataset is not at {folder} (data.local_dir in params.yaml); the tests need it")
    return folder


@pytest.fixture(scope="session")
def real_data(data_dir):
    return {split: read_csv_file(data_dir / f"{split}.csv", split)[0] for split in ("train", "test")}


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
    """The smallest configuration of a CPU ``profile``, made the one the pipeline trains
    (``train.profile``): a tiny model, one warm-up epoch, a few GRPO steps."""
    params["train"]["profile"] = profile
    cpu = params["profiles"][profile]
    cpu["model"]["arch"] = dict(TINY_ARCH)
    cpu["warmup"] |= {"epochs": 1, "log_every": 50}
    cpu["grpo"] |= {
        "max_steps": 4,
        "save_steps": 2,
        "completions_every": 2,
        "max_completion_length": 32,
        "eval_steps": 2,
        "eval_rows": 16,
        "eval_prompts_per_device": 4,
    }
    cpu["validation"]["max_new_tokens"] = 32


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
