"""GRPO settings pass through to TRL by their own names, checked against the locked TRL's
``GRPOConfig`` fields (the snapshot in people_relation/grpo_fields.json)."""

from __future__ import annotations

import copy
import json
import sys
from pathlib import Path

import pytest

from people_relation.params import ParamsError
from people_relation.settings import parse_settings
from people_relation.trl_config import GRPO_FIELDS, STATED_TRL

ROOT = Path(__file__).resolve().parents[1]


def test_the_snapshot_is_the_installed_trls_grpo_config():
    """After a TRL upgrade in the lock files: `python scripts/trl_fields.py` rewrites it."""
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        from trl_fields import snapshot
    finally:
        sys.path.pop(0)
    written = json.loads((ROOT / "people_relation" / "grpo_fields.json").read_text(encoding="utf-8"))
    assert written == json.loads(json.dumps(snapshot(), ensure_ascii=False)), "run: python scripts/trl_fields.py"


def bad(params: dict, **grpo) -> str:
    p = copy.deepcopy(params)
    p["profiles"]["cpu"]["grpo"].update(grpo)
    with pytest.raises(ParamsError) as err:
        parse_settings(p, "my-params.yaml")
    return str(err.value)


def test_any_grpo_config_field_passes_through_as_given(params):
    p = copy.deepcopy(params)
    p["profiles"]["cpu"]["grpo"] |= {"importance_sampling_level": "sequence", "top_entropy_quantile": 0.2}
    g = parse_settings(p).profile("cpu").grpo
    assert g.trl_settings()["importance_sampling_level"] == "sequence"
    assert g.top_entropy_quantile == 0.2
    from people_relation.training.recipe import grpo_config_kwargs

    kwargs = grpo_config_kwargs(parse_settings(p).profile("cpu"), parse_settings(p).task, "out")
    assert kwargs["importance_sampling_level"] == "sequence" and kwargs["learning_rate"] == g.learning_rate
    assert set(kwargs) <= set(GRPO_FIELDS), set(kwargs) - set(GRPO_FIELDS)


def test_a_typo_is_named_with_the_closest_field(params):
    message = bad(params, importance_sampling_levl="token")
    assert "my-params.yaml: profiles.cpu.grpo.importance_sampling_levl: unknown key" in message
    assert "did you mean 'importance_sampling_level'?" in message


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ({"beta": "a lot"}, "profiles.cpu.grpo.beta: TRL's GRPOConfig wants float, got 'a lot'"),
        ({"use_cpu": 1}, "profiles.cpu.grpo.use_cpu: TRL's GRPOConfig wants bool"),
        ({"max_steps": 0}, "profiles.cpu.grpo.max_steps: must be >= 1 here, got 0"),
        ({"num_generations": 1}, "profiles.cpu.grpo.num_generations: must be >= 2 here"),
        ({"top_p": 1.5}, "profiles.cpu.grpo.top_p: must be > 0 and <= 1 here"),
        ({"per_device_train_batch_size": 8}, "set by the project from grpo.prompts_per_device x grpo.num_generations"),
        (
            {"reward_weights": [1.0, 2.0]},
            "profiles.cpu.grpo.reward_weights: TRL's reward_weights is set by the project",
        ),
    ],
)
def test_a_bad_trl_value_names_the_key(params, values, expected):
    assert expected in bad(params, **values)


def test_every_stated_field_is_required(params):
    p = copy.deepcopy(params)
    del p["profiles"]["cpu"]["grpo"]["beta"]
    with pytest.raises(ParamsError, match=r"profiles\.cpu\.grpo\.beta: missing \(TRL's GRPOConfig beta, default 0\.0"):
        parse_settings(p)
    assert set(STATED_TRL) <= set(GRPO_FIELDS)


def test_numbers_dvc_wrote_back_as_strings_are_numbers(params):
    p = copy.deepcopy(params)
    p["profiles"]["cpu"]["grpo"]["learning_rate"] = "2e-05"
    p["profiles"]["cpu"]["grpo"]["max_steps"] = "30"
    g = parse_settings(p).profile("cpu").grpo
    assert g.learning_rate == 2e-5 and g.max_steps == 30 and isinstance(g.max_steps, int)


def test_trls_own_checks_run_before_any_work(params):
    """Values each of the right type that TRL's GRPOConfig refuses together (a generation
    batch that is not a whole number of micro-batches) stop the train step before any model
    is built."""
    from people_relation.errors import PermanentError
    from people_relation.infra.paths import resolve_arm
    from steps.train import check_trl_config

    p = copy.deepcopy(params)
    check_trl_config(resolve_arm(parse_settings(p), "cpu"))  # the profile as it is passes
    p["profiles"]["cpu"]["grpo"]["generation_batch_size"] = 7
    with pytest.raises(
        PermanentError, match=r"profiles\.cpu\.grpo: TRL's GRPOConfig refuses the settings: .*generation_batch_size"
    ):
        check_trl_config(resolve_arm(parse_settings(p), "cpu"))
