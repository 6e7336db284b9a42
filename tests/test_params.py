import pytest

from people_relation.params import ParamsError, get, get_float, get_int, get_str, load_params


def test_numbers_written_back_as_strings_are_read_as_numbers():
    p = {"train": {"lr": "2e-5", "steps": "500", "seed": 7.0}}
    assert get_float(p, "train.lr") == 2e-5
    assert get_int(p, "train.steps") == 500
    assert get_int(p, "train.seed") == 7


@pytest.mark.parametrize("value", ["abc", True, None, "1.5", 2.5])
def test_bad_whole_numbers_name_the_parameter(value):
    with pytest.raises(ParamsError, match="train.steps"):
        get_int({"train": {"steps": value}}, "train.steps")


def test_missing_and_choices():
    with pytest.raises(ParamsError, match="missing parameter 'split.seed'"):
        get({"split": {}}, "split.seed")
    with pytest.raises(ParamsError, match="use one of published, stratified"):
        get_str({"s": "random"}, "s", ("published", "stratified"))


def test_load_params_errors(tmp_path):
    with pytest.raises(ParamsError, match="no such params file"):
        load_params(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("a: [1,\n")
    with pytest.raises(ParamsError, match="not valid YAML"):
        load_params(bad)


def test_project_params_are_complete(params):
    assert get_str(params, "split.strategy") == "published"
    assert 0 < get_float(params, "split.validation_fraction") < 1
    assert get_int(params, "split.seed") == 42


def test_tracking_uri_is_the_users_not_the_last_one_mlflow_set(params, monkeypatch, tmp_path):
    import mlflow

    import people_relation.infra.tracking as tracking
    from people_relation.runtime import USER_TRACKING_URI_ENV

    monkeypatch.delenv(USER_TRACKING_URI_ENV, raising=False)
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'other.db'}")  # MLflow exports this to the environment
    p = dict(params, tracking=dict(params["tracking"], uri="sqlite:///mlflow.db"))
    assert tracking.tracking_uri(p) == f"sqlite:///{tracking.PROJECT_ROOT / 'mlflow.db'}"
    monkeypatch.setenv(USER_TRACKING_URI_ENV, "http://127.0.0.1:5000")
    assert tracking.tracking_uri(p) == "http://127.0.0.1:5000"


def test_a_queued_dvc_experiment_logs_to_the_repository_it_came_from(params, monkeypatch, tmp_path):
    import people_relation.infra.tracking as tracking
    from people_relation.runtime import USER_TRACKING_URI_ENV

    monkeypatch.delenv(USER_TRACKING_URI_ENV, raising=False)
    p = dict(params, tracking=dict(params["tracking"], uri="sqlite:///mlflow.db"))
    monkeypatch.delenv("DVC_ROOT", raising=False)
    assert tracking.tracking_uri(p) == f"sqlite:///{tracking.PROJECT_ROOT / 'mlflow.db'}"
    # `dvc exp run --queue/--temp` runs in a temporary copy and sets DVC_ROOT to the original
    monkeypatch.setenv("DVC_ROOT", str(tmp_path))
    assert tracking.tracking_uri(p) == f"sqlite:///{tmp_path / 'mlflow.db'}"


def test_params_rewritten_by_dvc_set_param_read_back_unchanged(tmp_path, project_root):
    """`dvc exp run -S` / the pipeline's set_params rewrite params.yaml with ruamel: bare `off`,
    `2e-05`, empty nulls, block lists. Reading it back must give the same values."""
    import shutil

    from dvc.utils.hydra import apply_overrides

    from people_relation.params import get_float, get_str, load_params

    copy = tmp_path / "params.yaml"
    shutil.copy(project_root / "params.yaml", copy)
    before = load_params(copy)
    apply_overrides(copy, ["profiles.cpu.grpo.learning_rate=2e-5"])
    text = copy.read_text(encoding="utf-8")
    assert "vllm_mode: off" in text and "learning_rate: 2e-05" in text  # how DVC writes them
    after = load_params(copy)
    assert get_str(after, "profiles.cpu.grpo.vllm_mode") == "off"
    assert get_float(after, "profiles.cpu.grpo.learning_rate") == 2e-5
    after["profiles"]["cpu"]["grpo"]["learning_rate"] = before["profiles"]["cpu"]["grpo"]["learning_rate"]
    assert after == before
