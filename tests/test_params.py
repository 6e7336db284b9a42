"""params.yaml as read from disk (``load_params``) and the typed values its keys load as."""

import pytest

from people_relation.params import ParamsError, load_params
from people_relation.settings import Tracking, load_settings, parse_settings, with_values


def test_numbers_written_back_as_strings_are_read_as_numbers(params):
    loaded = parse_settings(
        with_values(
            params,
            {"profiles.cpu.grpo.learning_rate": "2e-5", "profiles.cpu.grpo.max_steps": "500", "split.seed": 7.0},
        )
    )
    grpo = loaded.profiles["cpu"].grpo
    assert grpo.learning_rate == 2e-5 and isinstance(grpo.learning_rate, float)
    assert grpo.max_steps == 500 and isinstance(grpo.max_steps, int)
    assert loaded.split.seed == 7 and isinstance(loaded.split.seed, int)


@pytest.mark.parametrize(
    "value",
    [
        "abc",
        True,
        None,
        "1.5",
        2.5,
    ],
)
def test_bad_whole_numbers_name_the_parameter(params, value):
    with pytest.raises(
        ParamsError,
        match=r"profiles\.cpu\.grpo\.max_steps: (TRL's GRPOConfig wants int, got|needs a value)",
    ):
        parse_settings(with_values(params, {"profiles.cpu.grpo.max_steps": value}))


def test_missing_and_choices(params):
    without_seed = with_values(params, {})
    del without_seed["split"]["seed"]
    with pytest.raises(ParamsError, match=r"split\.seed: missing"):
        parse_settings(without_seed)
    with pytest.raises(ParamsError, match=r"split\.strategy: Input should be 'published' or 'stratified'"):
        parse_settings(with_values(params, {"split.strategy": "random"}))
    with pytest.raises(ParamsError, match="no parameter 'split.sed'"):
        with_values(params, {"split.sed": 1})  # a changed value must name an existing key


def test_load_params_errors(tmp_path):
    with pytest.raises(ParamsError, match="no such params file"):
        load_params(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("a: [1,\n")
    with pytest.raises(ParamsError, match="not valid YAML"):
        load_params(bad)


def test_project_params_are_complete(settings):
    assert settings.split.strategy == "published"
    assert 0 < settings.split.validation_fraction < 1
    assert settings.split.seed == 42


def test_tracking_uri_is_the_users_not_the_last_one_mlflow_set(params, monkeypatch, tmp_path):
    import mlflow

    import people_relation.infra.tracking as tracking
    from people_relation.runtime import USER_TRACKING_URI_ENV

    monkeypatch.delenv(USER_TRACKING_URI_ENV, raising=False)
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'other.db'}")  # MLflow exports this to the environment
    t = Tracking(**dict(params["tracking"], uri="sqlite:///mlflow.db"))
    assert tracking.tracking_uri(t) == f"sqlite:///{tracking.PROJECT_ROOT / 'mlflow.db'}"
    monkeypatch.setenv(USER_TRACKING_URI_ENV, "http://127.0.0.1:5000")
    assert tracking.tracking_uri(t) == "http://127.0.0.1:5000"


def test_a_queued_dvc_experiment_logs_to_the_repository_it_came_from(params, monkeypatch, tmp_path):
    import people_relation.infra.tracking as tracking
    from people_relation.runtime import USER_TRACKING_URI_ENV

    monkeypatch.delenv(USER_TRACKING_URI_ENV, raising=False)
    t = Tracking(**dict(params["tracking"], uri="sqlite:///mlflow.db"))
    monkeypatch.delenv("DVC_ROOT", raising=False)
    assert tracking.tracking_uri(t) == f"sqlite:///{tracking.PROJECT_ROOT / 'mlflow.db'}"
    # `dvc exp run --queue/--temp` runs in a temporary copy and sets DVC_ROOT to the original
    monkeypatch.setenv("DVC_ROOT", str(tmp_path))
    assert tracking.tracking_uri(t) == f"sqlite:///{tmp_path / 'mlflow.db'}"


def test_params_rewritten_by_dvc_set_param_read_back_unchanged(tmp_path, project_root):
    """`dvc exp run -S` / the pipeline's set_params rewrite params.yaml with ruamel: bare `off`,
    `2e-05`, empty nulls, block lists. Reading it back must give the same values."""
    import shutil

    from dvc.utils.hydra import apply_overrides

    copy = tmp_path / "params.yaml"
    shutil.copy(project_root / "params.yaml", copy)
    before = load_params(copy)
    apply_overrides(copy, ["profiles.cpu.grpo.learning_rate=2e-5"])
    text = copy.read_text(encoding="utf-8")
    assert "vllm_mode: off" in text and "learning_rate: 2e-05" in text  # how DVC writes them
    after = load_params(copy)
    grpo = load_settings(copy).profiles["cpu"].grpo
    assert grpo.vllm_mode == "off"
    assert grpo.learning_rate == 2e-5
    changed = [n for n, p in after["profiles"].items() if p != before["profiles"][n]]
    assert changed == ["cpu", "cpu-pretrained", "sentiment-cpu"]  # and the profiles built on cpu, which take its value
    for name in changed:
        after["profiles"][name]["grpo"]["learning_rate"] = before["profiles"][name]["grpo"]["learning_rate"]
    assert after == before
