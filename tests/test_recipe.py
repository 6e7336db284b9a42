"""What the GPU profiles would launch, checked without a GPU."""

import copy
import json
import re
from pathlib import Path

import pytest
import yaml

from people_relation.params import ParamsError
from people_relation.settings import Profile, parse_settings, with_values
from people_relation.training.recipe import (
    batch_arithmetic,
    grpo_config_kwargs,
    launch_command,
    launch_env,
    vllm_server_command,
)


@pytest.fixture
def published(settings):
    return settings.profile("qwen2.5-7b")


def changed_profile(params: dict, name: str, values: dict) -> Profile:
    """Profile ``name`` loaded from the project params with ``values`` (dotted keys inside
    the profile) changed: the whole file is checked again, as at load time."""
    raw = copy.deepcopy(params)
    raw["profiles"][name] = with_values(raw["profiles"][name], values)  # a profile name may hold a dot
    return parse_settings(raw).profile(name)


def refused(params: dict, values: dict) -> str:
    """The load-time error of the project params with ``values`` (full dotted keys) changed."""
    with pytest.raises(ParamsError) as err:
        parse_settings(with_values(params, values))
    return str(err.value)


def with_vllm_port(prof: Profile, port: int) -> Profile:
    assert prof.vllm is not None
    return prof.model_copy(update={"vllm": prof.vllm.model_copy(update={"port": port})})


def test_published_batch_is_192_completions_of_24_prompts(published):
    batch = batch_arithmetic(published)
    assert batch["per_device_train_batch_size"] == 8  # 1 prompt x 8 generations
    assert batch["gradient_accumulation_steps"] == 8
    assert batch["num_processes"] == 3
    assert batch["prompts_per_step"] == 24
    assert batch["completions_per_step"] == 192


def test_published_recipe_values_are_explicit(published, settings):
    kw = grpo_config_kwargs(published, settings.task, "out")
    assert kw["max_steps"] == 500
    assert kw["learning_rate"] == 5e-7
    assert kw["lr_scheduler_type"] == "cosine"
    assert kw["warmup_steps"] == 0.03
    assert kw["beta"] == 0.001  # current TRL defaults to 0
    assert kw["use_bias_correction_kl"] is False  # current TRL defaults to true; TRL 0.14 had no such term
    assert kw["model_init_kwargs"] == {"dtype": "bfloat16"}  # TRL loads in float32 unless told
    assert kw["loss_type"] == "grpo"  # current TRL defaults to dapo; grpo is TRL 0.14's loss
    assert kw["scale_rewards"] == "group"
    assert kw["num_generations"] == 8
    assert kw["max_completion_length"] == 1024
    assert kw["temperature"] == 0.9
    assert kw["bf16"] is True and kw["gradient_checkpointing"] is True
    assert kw["save_steps"] == 25 and kw["seed"] == 42
    assert kw["ddp_timeout"] == 1800  # also given to the process group the training process creates first
    assert kw["use_vllm"] is True and kw["vllm_mode"] == "server"
    assert kw["reward_weights"] == [1.0, 1.0]  # the task's: format, label
    # the published 256 would cut 48 training prompts (counted with Qwen2.5's tokenizer): none is cut here
    assert published.grpo.max_prompt_length == 320


def test_published_launch_uses_accelerate_with_zero3_and_a_separate_vllm_gpu(published, project_root):
    command = launch_command(published, "qwen2.5-7b", "params.yaml")
    assert command[:3] == ["python", "-m", "accelerate.commands.launch"]
    config_file = command[command.index("--config_file") + 1]
    assert command[command.index("--num_processes") + 1] == "3"
    assert command[command.index("--gpu_ids") + 1] == "0,1,2"
    assert command[-4:] == ["--params-file", "params.yaml", "--profile", "qwen2.5-7b"]
    config = yaml.safe_load((project_root / config_file).read_text())
    assert config["distributed_type"] == "DEEPSPEED"
    assert config["deepspeed_config"]["zero_stage"] == 3
    assert config["mixed_precision"] == "bf16"
    server = vllm_server_command(published, "Qwen/Qwen2.5-7B-Instruct")
    assert server[:3] == ["python", "-m", "trl.scripts.vllm_serve"]
    assert set(published.vllm.gpus).isdisjoint(published.launch.training_gpus)
    assert int(server[server.index("--max_model_len") + 1]) >= 256 + 1024


def test_zero3_config_is_valid_for_deepspeed(project_root):
    """accelerate turns the YAML into a DeepSpeed config; its plugin must accept it."""
    from accelerate.utils import DeepSpeedPlugin

    config = yaml.safe_load((project_root / "configs/accelerate/deepspeed_zero3.yaml").read_text())
    ds = config["deepspeed_config"]
    plugin = DeepSpeedPlugin(
        zero_stage=ds["zero_stage"],
        offload_optimizer_device=ds["offload_optimizer_device"],
        offload_param_device=ds["offload_param_device"],
        zero3_init_flag=ds["zero3_init_flag"],
        zero3_save_16bit_model=ds["zero3_save_16bit_model"],
    )
    assert plugin.deepspeed_config["zero_optimization"]["stage"] == 3
    assert plugin.deepspeed_config["zero_optimization"]["stage3_gather_16bit_weights_on_model_save"] is True


def test_single_gpu_lora_profile_keeps_the_published_batch(settings):
    lora = settings.profile("qwen2.5-7b-lora")
    assert batch_arithmetic(lora)["completions_per_step"] == 192
    assert launch_command(lora, "qwen2.5-7b-lora", "params.yaml")[:3] == [
        "python",
        "-m",
        "people_relation.training.grpo_process",
    ]
    assert grpo_config_kwargs(lora, settings.task, "out")["vllm_mode"] == "colocate"
    assert vllm_server_command(lora, "m") is None
    # one plain process sees only its GPU: TRL's device_map="auto" cannot spread the model
    assert launch_env(lora) == {"CUDA_VISIBLE_DEVICES": "0"}
    assert launch_env(settings.profile("qwen2.5-7b")) == {}  # accelerate launch --gpu_ids places the ranks
    assert launch_env(settings.profile("cpu")) == {}
    assert (
        grpo_config_kwargs(settings.profile("qwen2.5-3b-lora"), settings.task, "out")["vllm_enable_sleep_mode"] is True
    )
    assert grpo_config_kwargs(lora, settings.task, "out")["vllm_enable_sleep_mode"] is False


@pytest.mark.parametrize("name", ["cpu", "cpu-prior", "cpu-rl", "qwen2.5-7b", "qwen2.5-7b-lora", "qwen2.5-3b-lora"])
def test_every_profile_builds_a_real_grpo_config(settings, name, tmp_path):
    from trl import GRPOConfig

    kw = grpo_config_kwargs(settings.profile(name), settings.task, str(tmp_path))
    if not kw["use_cpu"]:
        kw |= {"use_cpu": True, "bf16": False}  # no GPU here: check the rest of the config
    config = GRPOConfig(**kw)
    assert config.loss_type == "grpo" and config.beta == kw["beta"]
    assert config.per_device_train_batch_size % config.num_generations == 0
    # validation during training; the Trainer keeps a checkpoint at every evaluation
    assert config.eval_strategy == "steps" and config.save_steps % config.eval_steps == 0
    assert config.metric_for_best_model == "eval_greedy_select_weighted_f1" and config.greater_is_better
    assert config.load_best_model_at_end == (settings.profile(name).grpo.publish == "best")


def test_evaluations_must_line_up_with_checkpoints(params):
    """Refused when params.yaml is loaded, before any training."""
    message = refused(params, {"profiles.cpu.grpo.eval_steps": 10, "profiles.cpu.grpo.save_steps": 25})
    assert re.search(r"profiles\.cpu: grpo\.save_steps .* multiple of grpo\.eval_steps", message)
    message = refused(params, {"profiles.cpu.grpo.eval_steps": 25, "profiles.cpu.grpo.publish": "median"})
    assert "profiles.cpu.grpo.publish: Input should be 'best' or 'last'" in message


def test_the_reward_weights_are_the_tasks_and_the_balance_bonus_needs_batch_scaling(params, settings, tmp_path):
    """TRL's reward weights are the task file's, in its order; the balance bonus (a deviation)
    is refused with per-group scaling, which would cancel its per-label weight."""
    from ruamel.yaml import YAML

    assert grpo_config_kwargs(settings.profile("cpu-rl"), settings.task, "out")["reward_weights"] == [1.0, 1.0]
    task_file = tmp_path / "balanced.yaml"
    YAML().dump(settings.task.to_dict() | {"rewards": {"format": 1.0, "label": 2.0, "balance": 2.0}}, task_file)
    run = {"runs.relation.task": str(task_file), "runs.relation.profile": "cpu-rl"}
    with pytest.raises(ParamsError, match=r"reward 'balance' needs profiles\.cpu-rl\.grpo\.scale_rewards"):
        parse_settings(with_values(params, run))  # refused when the run's settings load
    balanced = parse_settings(with_values(params, run | {"profiles.cpu-rl.grpo.scale_rewards": "batch"}))
    assert list(balanced.task.rewards) == ["format", "label", "balance"]
    prof = balanced.profile("cpu-rl")
    assert grpo_config_kwargs(prof, balanced.task, "out")["reward_weights"] == [1.0, 2.0, 2.0]
    assert [f.__name__ for f in balanced.task.reward_functions(["夫妻"])[0]] == [
        "format_reward",
        "label_reward",
        "balance_reward",
    ]  # the same order as the weights
    grouped = prof.model_copy(update={"grpo": prof.grpo.model_copy(update={"scale_rewards": "group"})})
    with pytest.raises(ValueError, match="task relation's reward 'balance' needs grpo.scale_rewards 'batch' or 'none'"):
        grpo_config_kwargs(grouped, balanced.task, "out")
    grpo_config_kwargs(grouped, settings.task, "out")  # without the bonus, group scaling is fine
    # the rewards and their weights are the task's alone: the old profile keys are refused at load
    for stale in ({"label_reward": "balanced"}, {"reward_weights": [1.0, 2.0]}):
        raw = copy.deepcopy(params)
        raw["profiles"]["cpu-rl"]["grpo"] |= stale
        with pytest.raises(ParamsError, match=rf"profiles\.cpu-rl\.grpo\.{next(iter(stale))}: "):
            parse_settings(raw)


def test_bad_profile_values_are_named(params, settings):
    assert "profiles.cpu.grpo.loss_type: TRL's GRPOConfig wants str, got 3" in refused(
        params, {"profiles.cpu.grpo.loss_type": 3}
    )
    message = refused(params, {"profiles.cpu.launch.num_processes": 2})
    assert "profiles.cpu: launch.num_processes > 1 needs launch.accelerate_config" in message
    with pytest.raises(ParamsError, match="no profile 'tpu'"):
        settings.profile("tpu")
    # refused when params.yaml is loaded: before training, not after it
    lora = {"launch.num_processes": 3, "launch.accelerate_config": "configs/accelerate/deepspeed_zero3.yaml"}
    with pytest.raises(ParamsError, match=r"profiles\.qwen2\.5-7b-lora: a LoRA profile .* trains in one process"):
        changed_profile(params, "qwen2.5-7b-lora", lora)
    with pytest.raises(ParamsError, match=r"one plain GPU process needs its GPU in launch\.training_gpus"):
        changed_profile(params, "qwen2.5-7b-lora", {"launch.training_gpus": None})
    with pytest.raises(ParamsError, match=r"vllm\.sleep_mode applies to an engine inside the training process"):
        changed_profile(params, "qwen2.5-7b-lora", {"vllm.sleep_mode": True, "grpo.vllm_mode": "off"})


@pytest.mark.integration
def test_dry_run_prints_the_launch_without_running(project_root):
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-m", "flows.train", "--dry-run", "--profile", "qwen2.5-7b"],
        cwd=project_root,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    profile, rest = result.stdout.split("\n# plan\n")
    body, launch = rest.split("\n# launch\n")
    # the profile as it runs, every value after its description
    assert profile.startswith("# profile qwen2.5-7b, resolved from params.yaml")
    assert "  # TRL: The initial learning rate for AdamW.\n  learning_rate: 5e-07\n" in profile  # TRL's own help
    launch, serve = launch.split("\n# serve the trained model (serve and evaluate steps)\n")
    plan = json.loads(body)
    assert plan["batch"]["completions_per_step"] == 192
    assert plan["grpo_config"]["beta"] == 0.001
    assert plan["grpo_config"]["use_bias_correction_kl"] is False
    assert plan["grpo_config"]["model_init_kwargs"] == {"dtype": "bfloat16"}
    assert plan["max_prompt_length"] == 320 and plan["register_model"] is False
    assert plan["validation"] == {"engine": "vllm", "max_new_tokens": 1024, "batch_size": 64, "max_rows": None}
    assert "CUDA_VISIBLE_DEVICES=3" in launch and "trl.scripts.vllm_serve" in launch
    assert "accelerate.commands.launch --config_file configs/accelerate/deepspeed_zero3.yaml" in launch
    assert serve.startswith("CUDA_VISIBLE_DEVICES=0 python -m vllm.entrypoints.openai.api_server")
    assert re.search(r"--model \S+/models/qwen2\.5-7b/grpo ", serve) and "--tokenizer" not in serve
    assert "--tensor-parallel-size 1 --gpu-memory-utilization 0.9" in serve and "--max-model-len 1344" in serve
    assert "Flow run" not in result.stdout + result.stderr  # no Prefect run for a dry run
    assert not Path(plan["final_model"]).exists()


STAND_IN_SERVER = """
import os, sys
from http.server import BaseHTTPRequestHandler, HTTPServer
print("CUDA_VISIBLE_DEVICES=" + os.environ.get("CUDA_VISIBLE_DEVICES", ""), "model=" + sys.argv[2], flush=True)
if sys.argv[3] == "fail":
    sys.exit(3)
class Health(BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200 if self.path == "/health" else 404)
        self.end_headers()
HTTPServer(("127.0.0.1", int(sys.argv[1])), Health).serve_forever()
"""


@pytest.mark.parametrize("outcome", ["healthy", "fail"])
def test_generation_server_runs_on_the_vllm_gpus_and_always_stops(settings, published, tmp_path, monkeypatch, outcome):
    """The GPU path's vLLM generation server, with a stand-in process (TRL's server needs a GPU):
    started on ``vllm.gpus``, waited for on ``/health``, stopped when training ends; a server
    that dies while starting fails the step with its log."""
    import socket

    import httpx

    import steps.train
    from people_relation.serving.server import ServerError
    from steps.train import generation_server

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    prof = with_vllm_port(published, port)
    script = tmp_path / "stand_in.py"
    script.write_text(STAND_IN_SERVER)
    monkeypatch.setattr(
        steps.train, "vllm_server_command", lambda prof, model, python: [python, str(script), str(port), model, outcome]
    )
    log = tmp_path / "generation_server.log"
    if outcome == "fail":
        with pytest.raises(ServerError, match="(?s)exited with status 3.*CUDA_VISIBLE_DEVICES=3"):
            with generation_server(settings, prof, "Qwen/Qwen2.5-7B-Instruct", log):
                pass
        return
    with generation_server(settings, prof, "Qwen/Qwen2.5-7B-Instruct", log):
        assert httpx.get(f"http://127.0.0.1:{port}/health").status_code == 200
    assert "CUDA_VISIBLE_DEVICES=3 model=Qwen/Qwen2.5-7B-Instruct" in log.read_text()
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{port}/health")


def test_generation_server_is_not_started_without_vllm_server_mode(settings, tmp_path):
    from steps.train import generation_server

    log = tmp_path / "generation_server.log"
    with generation_server(settings, settings.profile("cpu"), "models/cpu/warmup", log):
        pass
    assert not log.exists()


def test_generation_server_refuses_a_taken_port_naming_the_setting(settings, published, tmp_path):
    """TRL's trainer connects to vllm.port: if another process holds it, training would talk
    to that process. The step stops before starting anything."""
    import socket

    from people_relation.serving.server import ServerError
    from steps.train import generation_server

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        prof = with_vllm_port(published, sock.getsockname()[1])
        with pytest.raises(ServerError, match=r"in use .*set vllm\.port to a free port"):
            with generation_server(settings, prof, "Qwen/Qwen2.5-7B-Instruct", tmp_path / "g.log"):
                pass
    assert not (tmp_path / "g.log").exists()


def test_two_machines_run_the_published_batch_with_one_command_each(params, settings):
    prof = settings.profile("qwen2.5-7b-2x4")
    batch = batch_arithmetic(prof)
    assert (batch["num_processes"], batch["completions_per_step"], batch["prompts_per_step"]) == (8, 192, 24)
    first, second = (launch_command(prof, "qwen2.5-7b-2x4", "params.yaml", machine_rank=k) for k in (0, 1))

    def flag(command: list[str], name: str) -> str:
        return command[command.index(name) + 1]

    for rank, command in enumerate((first, second)):
        assert flag(command, "--machine_rank") == str(rank)
        assert flag(command, "--num_machines") == "2" and flag(command, "--num_processes") == "8"  # over both
        assert flag(command, "--main_process_ip") == prof.launch.main_address
        assert flag(command, "--main_process_port") == "29500"
        assert flag(command, "--gpu_ids") == "0,1,2,3"  # on each machine
        assert flag(command, "--rdzv_conf") == "timeout=1800"  # a machine waits as long as a collective
    assert [a for a in first if a != "0"] == [a for a in second if a != "1"]  # only the rank differs
    with pytest.raises(ValueError, match="machine rank 2: profile qwen2.5-7b-2x4 runs on 2 machine"):
        launch_command(prof, "qwen2.5-7b-2x4", "params.yaml", machine_rank=2)
    # one machine: no multi-machine flag at all
    assert "--machine_rank" not in launch_command(settings.profile("qwen2.5-7b"), "qwen2.5-7b", "params.yaml")


def test_a_layout_over_machines_that_does_not_divide_is_refused(params):
    name = "qwen2.5-7b-2x4"
    with pytest.raises(ParamsError, match=r"launch\.num_processes \(7\) must be a multiple of launch\.num_machines"):
        changed_profile(params, name, {"launch.num_processes": 7})
    with pytest.raises(ParamsError, match=r"launch\.num_machines > 1 needs launch\.main_address, launch\.main_port"):
        changed_profile(params, name, {"launch.main_address": None, "launch.main_port": None})
    with pytest.raises(ParamsError, match=r"launch\.training_gpus lists 3 GPUs; each machine runs 4 training"):
        changed_profile(params, name, {"launch.training_gpus": [0, 1, 2]})


@pytest.mark.integration
def test_the_dry_run_of_two_machines_prints_each_machines_command(project_root):
    import subprocess
    import sys

    def train(*args: str) -> subprocess.CompletedProcess:
        command = [sys.executable, "-m", "flows.train", "--profile", "qwen2.5-7b-2x4", *args]
        return subprocess.run(command, cwd=project_root, capture_output=True, text=True, timeout=120)

    result = train("--dry-run")
    assert result.returncode == 0, result.stderr[-2000:]
    launch = result.stdout.split("\n# launch\n")[1]
    assert "--machine_rank 0 --main_process_ip 10.0.0.1 --main_process_port 29500" in launch
    assert "# machine 1: python -m flows.train --profile qwen2.5-7b-2x4 --machine-rank 1, which starts\n" in launch
    assert "--machine_rank 1 --main_process_ip 10.0.0.1 --main_process_port 29500" in launch
    for rank, *also in (("2",), ("5", "--dry-run")):  # a dry run shows only a command that can run
        refused = train("--machine-rank", rank, *also)
        assert refused.returncode != 0, refused.stdout[-2000:]
        assert f"--machine-rank {rank}: profile qwen2.5-7b-2x4 runs on 2 machine(s)" in refused.stderr
