"""Benchmark: evaluation of the test split through the vLLM server vs plain transformers.

    python scripts/benchmark_serving.py [--profile cpu] [--model grpo] [--concurrency 1,8,32,64]
                                        [--hf-batch-size 16,64] [--repeats 3]

Same model, same rows, same greedy settings, same machine. transformers runs
``generate`` in padded batches (people_relation/training/generation.py, as validation does); vLLM answers
HTTP requests from the evaluation client at several concurrencies. The server's start-up
is timed separately (paid once per evaluation, not per row). Prints a table, the ratio of
the best transformers time to the best vLLM time (above 1: serving is faster), and how
often both paths gave the same answer; writes reports/benchmark/serving.json.
Run it alone: two benchmarks (or a training) at once on a small machine make both wrong.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import tempfile
import time
from pathlib import Path

from people_relation.runtime import configure

configure()  # before MLflow and vLLM's client are imported

from people_relation.infra.data import read_examples  # noqa: E402
from people_relation.infra.io import PROJECT_ROOT, project_path, read_settings, write_json  # noqa: E402
from people_relation.infra.paths import split_file, train_paths  # noqa: E402
from people_relation.predictions import read_records  # noqa: E402
from people_relation.serving.client import answer_rows  # noqa: E402
from people_relation.serving.server import served_model  # noqa: E402


def ints(value: str) -> list[int]:
    return [int(v) for v in value.split(",") if v]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--params-file", default="params.yaml")
    parser.add_argument("--profile", default=None)
    parser.add_argument("--model", default="grpo")
    parser.add_argument("--concurrency", type=ints, default=[1, 8, 32, 64])
    parser.add_argument("--hf-batch-size", type=ints, default=[16, 64])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--rows", type=int, default=None, help="first N test rows (default: all)")
    parser.add_argument("--reserved-cpus", type=int, default=None, help="override serve.reserved_cpus (CPU)")
    parser.add_argument("--skip-transformers", action="store_true", help="only time the server")
    parser.add_argument("--out", default="reports/benchmark/serving.json")
    args = parser.parse_args()

    import torch

    from people_relation.training.generation import generate_completions
    from people_relation.training.models import load_causal_lm, load_model_tokenizer

    settings = read_settings(args.params_file)
    name = settings.profile_name(args.profile)
    prof = settings.profile(name)
    if args.reserved_cpus is not None:
        prof = prof.model_copy(update={"serve": prof.serve.model_copy(update={"reserved_cpus": args.reserved_cpus})})
    rows = read_examples(split_file(settings.split, "test"))[: args.rows]
    directory = train_paths(settings, name).model(prof, args.model)
    max_tokens = prof.serve.max_tokens
    print(f"{len(rows)} rows, model {directory}, max_tokens {max_tokens}, torch threads {torch.get_num_threads()}")

    results: dict = {
        "rows": len(rows),
        "model": str(directory.relative_to(PROJECT_ROOT)),
        "max_tokens": max_tokens,
        "serve": prof.serve.model_dump(exclude_unset=True),
    }
    model = load_causal_lm(directory)
    tokenizer = load_model_tokenizer(directory, prof.model.tokenizer)
    hf_answers: list[str | None] = []
    results["transformers"] = {}
    for batch in [] if args.skip_transformers else args.hf_batch_size:
        times = []
        for _ in range(args.repeats):
            start = time.monotonic()
            completions = generate_completions(settings.task, model, tokenizer, rows, max_tokens, batch)
            times.append(time.monotonic() - start)
        hf_answers = [settings.task.parse(c).answer for c in completions]
        results["transformers"][f"batch_{batch}"] = {"seconds": times, "median_s": statistics.median(times)}
        print(f"transformers generate, batch {batch:3d}: median {statistics.median(times):6.2f}s  {times}")
    del model

    results["vllm_server"] = {}
    vllm_answers: dict[str, str | None] = {}
    with (
        tempfile.TemporaryDirectory() as tmp,
        served_model(settings.serve, prof, directory, Path(tmp) / "server.log", name) as srv,
    ):
        results["vllm_startup_s"] = srv.startup_s
        print(f"vLLM server start-up: {srv.startup_s:.1f}s")
        for concurrency in args.concurrency:
            times = []
            for i in range(args.repeats):
                out = Path(tmp) / f"answers-{concurrency}-{i}.jsonl"
                start = time.monotonic()
                answer_rows(
                    settings.task,
                    rows,
                    srv.base_url,
                    srv.api_key,
                    srv.model,
                    prof.serve.sampling(),
                    dataclasses.replace(settings.evaluate.client(concurrency), progress_every=10**9),
                    out,
                )
                times.append(time.monotonic() - start)
            vllm_answers = {k: r["answer"] for k, r in read_records(out)[0].items()}
            results["vllm_server"][f"concurrency_{concurrency}"] = {
                "seconds": times,
                "median_s": statistics.median(times),
            }
            print(f"vLLM server, concurrency {concurrency:3d}:     median {statistics.median(times):6.2f}s  {times}")

    best_vllm = min(v["median_s"] for v in results["vllm_server"].values())
    if args.skip_transformers:
        print(f"\nbest vLLM server {best_vllm:.2f}s")
        write_json(project_path(args.out), results)
        return
    best_hf = min(v["median_s"] for v in results["transformers"].values())
    same = sum(vllm_answers.get(e.id) == a for e, a in zip(rows, hf_answers, strict=True)) / len(rows)
    results |= {
        "best_transformers_s": best_hf,
        "best_vllm_s": best_vllm,
        "ratio": best_hf / best_vllm,
        "same_answer_rate": same,
    }
    print(
        f"\nbest transformers {best_hf:.2f}s / best vLLM server {best_vllm:.2f}s = {best_hf / best_vllm:.2f}x "
        f"(above 1: serving is faster); same answer on {same:.1%} of rows"
    )
    out_file = project_path(args.out)
    out_file.parent.mkdir(parents=True, exist_ok=True)
    write_json(out_file, results)


if __name__ == "__main__":
    main()
