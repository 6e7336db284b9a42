"""params.yaml is checked whole at load: typos, wrong types and out-of-range values fail
before any work, naming the file and the key."""

from __future__ import annotations

import copy
import subprocess
import sys

import pytest
import yaml

from people_relation.params import ParamsError
from people_relation.settings import Section, Settings, parse_settings


def test_the_project_params_load_as_typed_frozen_settings(params):
    settings = parse_settings(params)
    assert isinstance(settings, Settings)
    assert set(settings.profiles) == set(params["profiles"])
    cpu = settings.profiles["cpu"]
    assert cpu.grpo.max_steps == params["profiles"]["cpu"]["grpo"]["max_steps"]
    assert cpu.model.arch is not None and settings.profiles["qwen2.5-7b"].vllm is not None
    with pytest.raises(ValueError, match="frozen"):
        cpu.grpo.max_steps = 1


def bad(params: dict, change) -> str:
    p = copy.deepcopy(params)
    change(p)
    with pytest.raises(ParamsError) as err:
        parse_settings(p, "my-params.yaml")
    return str(err.value)


def test_a_misspelt_key_is_named_with_the_file_and_a_suggestion(params):
    message = bad(params, lambda p: p["profiles"]["cpu"]["grpo"].update(lerning_rate=1e-3))
    assert message.startswith("my-params.yaml: profiles.cpu.grpo.lerning_rate: unknown key")
    assert "did you mean 'learning_rate'?" in message


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        (
            "grpo.prompts_per_device",
            0,
            "profiles.cpu.grpo.prompts_per_device: Input should be greater than or equal to 1",
        ),
        (
            "grpo.prompt_sampling",
            "random",
            "profiles.cpu.grpo.prompt_sampling: Input should be 'natural' or 'balanced'",
        ),
        ("grpo.max_steps", -5, "profiles.cpu.grpo.max_steps: must be >= 1 here, got -5"),
        ("warmup.bf16", "sometimes", "profiles.cpu.warmup.bf16: Input should be a valid boolean"),
        ("collapse_guard.action", "halt", "collapse_guard.action: Input should be 'stop', 'warn' or 'off'"),
    ],
)
def test_a_bad_value_names_the_key_and_what_is_allowed(params, key, value, expected):
    section, name = key.split(".")
    assert expected in bad(params, lambda p: p["profiles"]["cpu"][section].__setitem__(name, value))


def test_rules_across_keys(params):
    assert "runs.relation.profile is 'tpu'; the profiles are cpu" in bad(
        params, lambda p: p["runs"]["relation"].update(profile="tpu")
    )
    assert "train.profile: set the run's profile in runs.<run>.profile" in bad(
        params, lambda p: p["train"].update(profile="cpu")
    )
    assert "profiles.cpu.warmup: an enabled warm-up needs epochs" in bad(
        params, lambda p: p["profiles"]["cpu"]["warmup"].pop("epochs")
    )
    assert "profiles.cpu.model: source 'scratch' builds a model here" in bad(
        params, lambda p: p["profiles"]["cpu"]["model"].pop("arch")
    )
    assert "baseline: ngram_max (1) must be at least ngram_min (2)" in bad(
        params, lambda p: p["baseline"].update(ngram_min=2, ngram_max=1)
    )
    missing = bad(params, lambda p: p["profiles"]["cpu"]["grpo"].pop("eval_steps"))
    assert "profiles.cpu.grpo.eval_steps: missing" in missing


def test_numbers_dvc_wrote_back_as_strings_are_numbers(params):
    p = copy.deepcopy(params)
    p["profiles"]["cpu"]["grpo"]["learning_rate"] = "2e-05"
    assert parse_settings(p).profiles["cpu"].grpo.learning_rate == 2e-5


@pytest.mark.integration
def test_a_command_refuses_a_bad_params_file_before_any_work(params, project_root, tmp_path):
    p = copy.deepcopy(params)
    p["profiles"]["cpu"]["grpo"]["max_steps"] = -5
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(p, allow_unicode=True), encoding="utf-8")
    result = subprocess.run(
        [sys.executable, "-m", "flows.train", "--dry-run", "--params-file", str(path)],
        cwd=project_root,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0
    assert f"{path}: profiles.cpu.grpo.max_steps: must be >= 1 here, got -5" in result.stderr


def test_the_schema_allows_exactly_the_choices_the_code_accepts():
    """Where the code still names its choices itself, the schema's Literal allows the same ones."""
    import typing

    from people_relation import settings, split

    def choices(model, field: str) -> set[str]:
        annotation = model.model_fields[field].annotation
        literal = next(a for a in [annotation, *typing.get_args(annotation)] if typing.get_origin(a) is typing.Literal)
        return set(typing.get_args(literal))

    pairs = [
        (settings.Split, "strategy", split.STRATEGIES),  # the pure split function checks its argument
    ]
    for model, field, code in pairs:
        assert choices(model, field) == set(code), (model.__name__, field)


def test_reroot_moves_every_output_folder_and_nothing_else(params, tmp_path):
    """Sandboxes and rehearsals re-root outputs from the schema's one list of output folders."""
    from people_relation.settings import output_dir_keys, reroot_outputs

    keys = output_dir_keys()
    assert {"data.prepared_dir", "split.out_dir", "train.models_dir", "evaluate.state_dir", "report.dir"} <= set(keys)
    moved = reroot_outputs(params, tmp_path)
    before, after = parse_settings(params).model_dump(), parse_settings(moved).model_dump()

    def at(tree, dotted):
        for part in dotted.split("."):
            tree = tree[part]
        return tree

    for key in keys:
        assert at(after, key) == str(tmp_path / at(before, key)), key
    for key in keys:  # put back, the rest is unchanged
        node = after
        *parents, leaf = key.split(".")
        for part in parents:
            node = node[part]
        node[leaf] = at(before, key)
    assert after == before
    assert params["data"]["local_dir"] == moved["data"]["local_dir"]  # an input, not an output


def test_overrides_reach_profiles_whose_names_hold_dots(params):
    from people_relation.settings import with_values

    changed = with_values(params, {"profiles.qwen2.5-7b.vllm.port": 8123, "split.seed": 7})
    settings = parse_settings(changed)
    assert settings.profile("qwen2.5-7b").vllm.port == 8123 and settings.split.seed == 7
    assert parse_settings(params).profile("qwen2.5-7b").vllm.port != 8123  # a copy: the tree itself is untouched
    with pytest.raises(ParamsError, match="no parameter 'profiles.qwen2.5-7b.vllm.prot'"):
        with_values(params, {"profiles.qwen2.5-7b.vllm.prot": 1})


def sections_in(model: type[Section], seen: dict[str, type[Section]] | None = None) -> dict[str, type[Section]]:
    """``model`` and every Section reachable from its fields, through ``X | None``,
    ``dict[str, X]``, ``list[X]`` and ``Annotated``."""
    import typing

    seen = {} if seen is None else seen
    if model.__name__ in seen:
        return seen
    seen[model.__name__] = model

    def walk(annotation) -> None:
        if isinstance(annotation, type) and issubclass(annotation, Section):
            sections_in(annotation, seen)
        for arg in typing.get_args(annotation):
            walk(arg)

    for field in model.model_fields.values():
        walk(field.annotation)
    return seen


def test_every_setting_is_documented_where_it_is_declared():
    """Each field's docstring is its description: a reader of settings.py (and of the
    applications' schemas), and code, can show it."""
    from apps.settings import DemoSettings
    from people_relation.training.rehearsal import Rehearsal

    sections = sections_in(Settings)
    for application in (DemoSettings, Rehearsal):
        sections_in(application, sections)
    assert {"Grpo", "Vllm", "StandIn", "Limits", "Intervals", "Run", "DemoSettings"} <= set(sections)
    undocumented = [
        f"{name}.{field}"
        for name, model in sections.items()
        for field, info in model.model_fields.items()
        if not (info.description or "").strip()
    ]
    assert not undocumented, f"fields without a docstring: {', '.join(undocumented)}"


# -- profiles built on a base ------------------------------------------------------------------


def test_a_profile_lists_what_differs_from_its_base_and_loads_complete(params, project_root):
    """``cpu-rl: {base: cpu, ...}``: cpu's values with cpu-rl's laid over them, key by key."""
    from people_relation.params import load_params

    raw = yaml.safe_load((project_root / "params.yaml").read_text(encoding="utf-8"))["profiles"]
    assert raw["cpu-rl"]["base"] == "cpu" and "arch" not in raw["cpu-rl"].get("model", {})
    resolved = load_params(project_root / "params.yaml")["profiles"]
    assert "base" not in resolved["cpu-rl"]
    assert resolved["cpu-rl"]["model"] == resolved["cpu"]["model"]  # inherited whole
    assert resolved["cpu-rl"]["grpo"]["learning_rate"] == raw["cpu-rl"]["grpo"]["learning_rate"]  # its own
    assert resolved["cpu-rl"]["grpo"]["num_generations"] == resolved["cpu"]["grpo"]["num_generations"]
    # a list replaces the base's whole; null clears a base's value
    lora = resolved["qwen2.5-7b-lora"]
    assert lora["serve"]["gpus"] == [0] and lora["launch"]["accelerate_config"] is None
    assert parse_settings(params).profiles["qwen2.5-7b-lora"].vllm.port is None
    # a base's base: the 24 GB profile is the LoRA one with another model and vLLM asleep
    small = resolved["qwen2.5-3b-lora"]
    assert small["grpo"] == lora["grpo"] and small["vllm"]["sleep_mode"] is True


def test_a_base_chain_resolves_in_order_and_a_bad_base_is_named():
    from people_relation.params import resolve_profiles

    tree = {
        "profiles": {
            "a": {"grpo": {"beta": 0.1, "seed": 1}, "tags": [1, 2]},
            "b": {"base": "a", "grpo": {"beta": 0.2}, "tags": [3]},
            "c": {"base": "b", "grpo": {"seed": 3}},
        }
    }
    out = resolve_profiles(tree)["profiles"]
    assert out["c"] == {"grpo": {"beta": 0.2, "seed": 3}, "tags": [3]}
    assert tree["profiles"]["c"] == {"base": "b", "grpo": {"seed": 3}}  # the input is left as it was
    with pytest.raises(ParamsError, match=r"my.yaml: profiles.b.base is 'z'; the profiles are a, b"):
        resolve_profiles({"profiles": {"a": {}, "b": {"base": "z"}}}, "my.yaml")
    with pytest.raises(ParamsError, match=r"profiles.b.base: a cycle \(a -> b -> a\)"):
        resolve_profiles({"profiles": {"a": {"base": "b"}, "b": {"base": "a"}}})


def test_a_typo_in_a_derived_profile_is_named_at_its_own_key(params):
    p = copy.deepcopy(params)
    p["profiles"]["cpu-rl"] = {"base": "cpu", "grpo": {"lerning_rate": 1e-3}}
    with pytest.raises(ParamsError, match=r"profiles.cpu-rl.grpo.lerning_rate: unknown key; did you mean"):
        parse_settings(p)


def test_the_profile_step_writes_the_profile_complete_and_the_dry_run_describes_it(params, tmp_path, project_root):
    """What DVC tracks for train, serve and evaluate is every resolved value; the printed
    version carries each field's description."""
    from people_relation.params import load_params
    from people_relation.settings import Profile, profile_yaml

    settings = parse_settings(params)
    written = profile_yaml(settings.profile("cpu-rl"), "cpu-rl")
    (tmp_path / "profile.yaml").write_text(written, encoding="utf-8")
    assert Profile.model_validate(load_params(tmp_path / "profile.yaml")) == settings.profile("cpu-rl")
    described = profile_yaml(settings.profile("cpu-rl"), "cpu-rl", described=True)
    assert f"# {Profile.model_fields['register_model'].description.split()[0]}" in described
    assert [line for line in described.splitlines() if not line.lstrip().startswith("#")] == written.splitlines()[2:]


def test_no_stage_but_the_profile_step_tracks_a_profile_by_its_own_keys(project_root):
    """A profile's own keys hold only what differs from its base: the stages that train,
    serve and evaluate read the resolved profile the ``profile`` stage writes."""
    stages = yaml.safe_load((project_root / "dvc.yaml").read_text(encoding="utf-8"))["stages"]
    for name, stage in stages.items():
        stage = stage.get("do", stage)  # a stage per run
        keys = [k for k in stage.get("params", []) if isinstance(k, str)]
        files = [f for item in stage.get("params", []) if isinstance(item, dict) for f in item]
        if name in ("profile", "report"):
            continue
        assert not [k for k in keys if k.startswith("profiles")], name
        if name in ("train", "serve", "evaluate"):
            assert files == ["${item.root}${train.reports_dir}/${item.profile}/profile.yaml"], name


# -- the applications' sections ----------------------------------------------------------------


def test_an_application_section_is_checked_by_its_own_schema_not_the_pipelines(params):
    """The pipeline passes ``demo`` and ``rehearsal`` through; the page and the rehearsal
    check them when they start, with the same messages."""
    from apps.settings import demo_settings
    from people_relation.training.rehearsal import rehearsal_settings

    p = copy.deepcopy(params)
    p["demo"]["prot"] = p["demo"].pop("port")
    p["rehearsal"]["profile"] = "tpu"
    settings = parse_settings(p)  # the pipeline's stages do not read these sections
    with pytest.raises(ParamsError) as err:
        demo_settings(settings, "my-params.yaml")
    assert str(err.value).startswith("my-params.yaml: demo.port: missing; demo.prot: unknown key; did you mean 'port'?")
    with pytest.raises(ParamsError, match="the rehearsed profile is 'tpu'; a rehearsal is of a GPU profile"):
        rehearsal_settings(settings)
    good = parse_settings(params)
    assert demo_settings(good).port == params["demo"]["port"]
    assert rehearsal_settings(good).stand_in.hidden_size == params["rehearsal"]["stand_in"]["hidden_size"]


def test_no_stage_tracks_or_runs_an_applications_settings(project_root):
    """Editing the demo's or the rehearsal's section, or their schemas, leaves every stage current."""
    stages = yaml.safe_load((project_root / "dvc.yaml").read_text(encoding="utf-8"))["stages"]
    for name, stage in stages.items():
        keys = [k for k in stage.get("params", []) if isinstance(k, str)]
        assert not [k for k in keys if k.split(".")[0] in ("demo", "rehearsal")], name
        assert not [d for d in stage.get("deps", []) if d.startswith("apps/") or d.endswith("rehearsal.py")], name


# -- runs -------------------------------------------------------------------------------------


def test_a_run_is_its_task_its_profile_its_own_params_and_its_folders(params):
    first, sentiment = parse_settings(params), parse_settings(params, run="sentiment")
    assert (first.run, first.task.name, first.train.profile) == (
        "relation",
        "relation",
        params["runs"]["relation"]["profile"],
    )
    assert first.split.out_dir == params["split"]["out_dir"] and first.split.strategy == "published"
    assert (sentiment.run, sentiment.task.name, sentiment.train.profile) == ("sentiment", "sentiment", "sentiment-cpu")
    assert sentiment.split.strategy == "stratified" and sentiment.report.arm_pairs == []  # its `set`
    root = params["runs"]["sentiment"]["root"]
    for key in ("split.out_dir", "data.prepared_dir", "train.models_dir", "evaluate.metrics_dir", "report.dir"):
        section, name = key.split(".")
        assert getattr(getattr(sentiment, section), name) == root + params[section][name], key
    # what every run shares stays where it is: the corpus, the pretrained model, the MLflow store
    assert sentiment.pretrain.out_dir == first.pretrain.out_dir and sentiment.corpus.out_dir == first.corpus.out_dir
    assert sentiment.tracking == first.tracking


def test_a_bad_run_is_named(params):
    with pytest.raises(ParamsError, match="no run 'kin'; the runs are relation, sentiment"):
        parse_settings(params, run="kin")
    p = copy.deepcopy(params)
    p["runs"]["sentiment"]["set"] = {"split.stratgy": "stratified"}
    with pytest.raises(ParamsError, match="no parameter 'split.stratgy'"):
        parse_settings(p, run="sentiment")
    p = copy.deepcopy(params)
    p["runs"]["sentiment"]["root"] = "/elsewhere"
    with pytest.raises(ParamsError, match=r"runs\.sentiment\.root: String should match pattern"):
        parse_settings(p, run="sentiment")
    assert "task: not a key of params.yaml; set runs.<run>.task" in bad(params, lambda p: p.update(task="x.yaml"))
