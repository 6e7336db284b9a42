from __future__ import annotations

from pathlib import Path

import pytest

import tasks  # noqa: F401  (offline defaults for every tool the tests start)
from people_relation.dataset import read_csv_file
from people_relation.params import get_str
from tasks.io import PROJECT_ROOT, project_path, read_project_params

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture(scope="session")
def params() -> dict:
    return read_project_params()


@pytest.fixture(scope="session")
def data_dir(params) -> Path:
    folder = project_path(get_str(params, "data.local_dir"))
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


@pytest.fixture
def sandbox_params(tmp_path, params, data_dir):
    """Project params with every output, and the MLflow store, inside ``tmp_path``."""
    import copy

    import yaml

    def make(**overrides) -> Path:
        p = copy.deepcopy(params)
        p["data"]["local_dir"] = str(data_dir)
        p["data"]["prepared_dir"] = str(tmp_path / "data" / "prepared")
        p["split"]["out_dir"] = str(tmp_path / "data" / "split")
        p["reports"]["data_dir"] = str(tmp_path / "reports" / "data")
        p["reports"]["split_dir"] = str(tmp_path / "reports" / "split")
        p["tracking"]["uri"] = f"sqlite:///{tmp_path / 'mlflow.db'}"
        p["tracking"]["artifact_dir"] = str(tmp_path / "mlartifacts")
        for dotted, value in overrides.items():
            node = p
            *parents, leaf = dotted.split("__")
            for part in parents:
                node = node[part]
            node[leaf] = value
        path = tmp_path / "params.yaml"
        path.write_text(yaml.safe_dump(p, allow_unicode=True), encoding="utf-8")
        return path

    return make
