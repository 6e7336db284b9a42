"""Training profiles resolved into exact GRPO settings and launch commands.

Pure functions of the typed settings: a dry run and the tests read what a GPU run would do
without importing TRL, DeepSpeed or CUDA.

Batch arithmetic. TRL 0.14 (the published run) batched *prompts*: per device and
micro-step, ``prompts_per_device`` prompts, each expanded to ``num_generations``
completions. Current TRL batches *completions*: ``per_device_train_batch_size`` counts
completions and must be a multiple of ``num_generations``. So
``per_device_train_batch_size = prompts_per_device * num_generations``, and one optimizer
step sees ``num_processes * gradient_accumulation_steps * per_device_train_batch_size``
completions: 3 x 8 x (1 x 8) = 192 for the published recipe.
"""

from __future__ import annotations

from typing import Any

from people_relation.settings import Profile
from people_relation.task import Task

# the training process, started by `python -m` or `accelerate launch`
GRPO_PROCESS = "people_relation.training.grpo_process"


def batch_arithmetic(prof: Profile) -> dict[str, int]:
    """Prompts and completions per micro-step and per optimizer step."""
    g, processes = prof.grpo, prof.launch.num_processes
    per_device = g.prompts_per_device * g.num_generations
    return {
        "num_processes": processes,
        "prompts_per_device": g.prompts_per_device,
        "num_generations": g.num_generations,
        "per_device_train_batch_size": per_device,
        "gradient_accumulation_steps": g.gradient_accumulation_steps,
        "prompts_per_step": processes * g.gradient_accumulation_steps * g.prompts_per_device,
        "completions_per_step": processes * g.gradient_accumulation_steps * per_device,
    }


def grpo_config_kwargs(prof: Profile, task: Task, output_dir: str) -> dict[str, Any]:
    """The ``GRPOConfig`` arguments of a run: the TRL fields the profile names, as given, and
    those the project decides from its own settings (``settings.DERIVED_TRL``); the reward
    weights are the task's, in its order of rewards."""
    g = prof.grpo
    if "balance" in task.rewards and g.scale_rewards == "group":
        raise ValueError(
            f"task {task.name}'s reward 'balance' needs grpo.scale_rewards 'batch' or 'none': 'group' divides "
            "each prompt's rewards by their spread, which cancels a per-label weight"
        )
    batch = batch_arithmetic(prof)
    kwargs: dict[str, Any] = {
        **g.trl_settings(),
        "output_dir": output_dir,
        "warmup_steps": g.warmup_ratio,  # a float below 1 is a ratio of max_steps
        # TRL loads the model in float32 unless told otherwise
        "model_init_kwargs": {"dtype": g.model_dtype},
        "per_device_train_batch_size": batch["per_device_train_batch_size"],
        "reward_weights": [float(w) for w in task.rewards.values()],  # type: ignore[arg-type]
        "disable_dropout": True,
        "shuffle_dataset": True,
        "report_to": "none",
        "use_vllm": g.vllm_mode != "off",
        "log_completions": False,
        "dataloader_num_workers": 0,
        **evaluation_kwargs(prof),
        # how long a process waits in a collective (rank 0 alone writes the final model and
        # removes the checkpoints while the others wait)
        "ddp_timeout": prof.launch.ddp_timeout_s,
    }
    if g.vllm_mode != "off":
        vllm = prof.vllm
        assert vllm is not None  # the settings check: a vllm_mode needs the block
        kwargs["vllm_mode"] = g.vllm_mode
        if g.vllm_mode == "server":
            kwargs |= {
                "vllm_server_host": vllm.host,
                "vllm_server_port": vllm.port,
                "vllm_group_port": vllm.group_port,
                "vllm_server_timeout": vllm.connect_timeout_s,
            }
        else:
            kwargs |= {
                "vllm_gpu_memory_utilization": vllm.gpu_memory_utilization,
                "vllm_tensor_parallel_size": vllm.tensor_parallel_size,
                "vllm_max_model_length": vllm.max_model_len,
                "vllm_enable_sleep_mode": bool(vllm.sleep_mode),
            }
    return kwargs


def evaluation_kwargs(prof: Profile) -> dict[str, Any]:
    """Validation during GRPO: every ``eval_steps`` (a TRL field of the profile), TRL scores ``num_generations_eval``
    sampled completions per validation prompt with the rewards, and the greedy answers are
    scored (``people_relation.training.grpo.GreedyValidation``: ``eval_greedy_*``). The
    checkpoint with the best greedy ``best_metric`` on the select half of the validation rows
    is published when ``publish`` is ``best`` (the check half reports it)."""
    g = prof.grpo
    return {
        "eval_strategy": "steps",
        "eval_on_start": True,  # the curve starts at the start model
        "per_device_eval_batch_size": g.eval_prompts_per_device * g.num_generations_eval,
        "metric_for_best_model": "eval_greedy_select_" + g.best_metric,
        "greater_is_better": True,
        "load_best_model_at_end": g.publish == "best",
    }


def launch_command(
    prof: Profile, name: str, params_file: str, python: str = "python", machine_rank: int = 0, run: str | None = None
) -> list[str]:
    """The command that runs the GRPO process for profile ``name`` on machine ``machine_rank``:
    plain Python, or ``accelerate launch`` (the settings check: several processes need its
    config). Over several machines every machine runs this with its own rank and the same
    ``params.yaml``; they meet at ``launch.main_address``:``launch.main_port``."""
    entry = ["-m", GRPO_PROCESS, "--params-file", params_file, "--profile", name] + (["--run", run] if run else [])
    launch = prof.launch
    if not 0 <= machine_rank < launch.num_machines:
        raise ValueError(f"machine rank {machine_rank}: profile {name} runs on {launch.num_machines} machine(s)")
    if not launch.accelerate_config:
        return [python, *entry]
    command = [python, "-m", "accelerate.commands.launch", "--config_file", launch.accelerate_config]
    command += ["--num_processes", str(launch.num_processes)]  # over every machine
    if launch.num_machines > 1:
        command += [
            "--num_machines",
            str(launch.num_machines),
            "--machine_rank",
            str(machine_rank),
            "--main_process_ip",
            str(launch.main_address),
            "--main_process_port",
            str(launch.main_port),
            # how long a machine waits for the others to join (torchrun's static rendezvous)
            "--rdzv_conf",
            f"timeout={launch.ddp_timeout_s}",
        ]
    if launch.training_gpus:
        command += ["--gpu_ids", ",".join(str(g) for g in launch.training_gpus)]
    return command + entry


def launch_env(prof: Profile) -> dict[str, str]:
    """Environment the GRPO process needs beyond the caller's. One plain process sees only
    its training GPU: TRL loads the model with ``device_map="auto"`` there, which would
    spread it over every GPU it can see (``accelerate launch`` places each rank itself,
    with ``--gpu_ids``)."""
    launch = prof.launch
    if prof.grpo.use_cpu or launch.accelerate_config or not launch.training_gpus:
        return {}
    return {"CUDA_VISIBLE_DEVICES": ",".join(str(g) for g in launch.training_gpus)}


def vllm_server_command(prof: Profile, model: str, python: str = "python") -> list[str] | None:
    """TRL's vLLM generation server for ``vllm_mode: server`` (on its own GPU), else None."""
    if prof.grpo.vllm_mode != "server":
        return None
    vllm = prof.vllm
    assert vllm is not None
    return [
        python,
        "-m",
        "trl.scripts.vllm_serve",
        "--model",
        model,
        "--host",
        str(vllm.host),
        "--port",
        str(vllm.port),
        "--tensor_parallel_size",
        str(vllm.tensor_parallel_size),
        "--gpu_memory_utilization",
        str(vllm.gpu_memory_utilization),
        "--max_model_len",
        str(vllm.max_model_len),
    ]
