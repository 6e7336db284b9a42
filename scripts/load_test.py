"""Load test: many requests at several concurrencies against the served model, on loopback.

    python scripts/load_test.py [--requests 2000] [--concurrency 1,16,64] [--time-limit-s 900]
                                [--profile cpu] [--model grpo] [--url http://127.0.0.1:PORT/v1]

Each level sends ``--requests`` chat requests (validation rows, cycled; the evaluation's
prompt and greedy settings) with at most ``--concurrency`` in flight, no client retries (a
failure is counted, not hidden), and stops by itself: after the requests, or when the level's
time limit passes (the requests not sent yet are reported as such). Per level: throughput,
latency p50/p99, errors by kind, and the server's memory (resident set of its whole process
tree) before and after. Without ``--url`` it starts the profile's server itself, which is the
only way the memory is measured. The server must listen on a loopback address.

Writes reports/benchmark/load_<profile>.json and prints a Markdown table. Run it alone: a
training or another benchmark on the same cores makes both numbers wrong.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import itertools
import os
import platform
import statistics
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlparse

from people_relation.runtime import configure

configure()

import openai  # noqa: E402
import psutil  # noqa: E402

from people_relation.infra.data import read_examples  # noqa: E402
from people_relation.infra.io import project_path, read_settings, write_json  # noqa: E402
from people_relation.infra.paths import split_file, train_paths  # noqa: E402
from people_relation.serving.client import ask, make_client  # noqa: E402
from people_relation.serving.server import served_model  # noqa: E402
from people_relation.settings import ClientSettings  # noqa: E402


def ints(value: str) -> list[int]:
    return [int(v) for v in value.split(",") if v]


def tree_rss_mib(pid: int | None) -> float | None:
    """Resident memory of ``pid`` and all its descendants, in MiB."""
    if pid is None:
        return None
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return None
    total = 0
    for proc in procs:
        try:
            total += proc.memory_info().rss
        except psutil.NoSuchProcess:
            pass
    return round(total / 2**20, 1)


def percentile(values: list[float], q: int) -> float | None:
    if len(values) < 2:
        return values[0] if values else None
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


async def level(  # noqa: PLR0913
    task, base_url, api_key, model, rows, sampling, requests, concurrency, timeout_s, time_limit_s
) -> dict:
    """One concurrency level: ``requests`` requests, at most ``concurrency`` in flight."""
    client = make_client(base_url, api_key, ClientSettings(concurrency=concurrency, timeout_s=timeout_s, max_retries=0))
    gate = asyncio.Semaphore(concurrency)
    latencies: list[float] = []
    errors: dict[str, int] = {}
    deadline = time.monotonic() + time_limit_s
    not_sent = 0

    async def one(example) -> None:
        nonlocal not_sent
        async with gate:
            if time.monotonic() > deadline:
                not_sent += 1
                return
            try:
                _, latency = await ask(client, task, example, model, sampling)
            except openai.APIError as err:
                kind = f"{type(err).__name__} {getattr(err, 'status_code', '') or ''}".strip()
                errors[kind] = errors.get(kind, 0) + 1
                return
            latencies.append(latency)

    start = time.monotonic()
    try:
        await asyncio.gather(*(one(e) for e in itertools.islice(itertools.cycle(rows), requests)))
    finally:
        await client.close()
    elapsed = time.monotonic() - start
    return {
        "concurrency": concurrency,
        "requests": requests,
        "ok": len(latencies),
        "errors": sum(errors.values()),
        "errors_by_kind": errors,
        "not_sent": not_sent,
        "seconds": round(elapsed, 2),
        "requests_per_s": round(len(latencies) / elapsed, 2),
        "p50_ms": round(1000 * percentile(latencies, 50), 1) if latencies else None,
        "p99_ms": round(1000 * percentile(latencies, 99), 1) if latencies else None,
    }


@contextmanager
def server_for(args, settings, name, prof):
    if args.url:
        yield args.url, os.environ.get(settings.serve.api_key_env) or None, settings.serve.served_model_name, None
        return
    model_dir = train_paths(settings, name).model(prof, args.model)
    with (
        tempfile.TemporaryDirectory() as tmp,
        served_model(settings.serve, prof, model_dir, Path(tmp) / "server.log", name) as server,
    ):
        yield server.base_url, server.api_key, server.model, server.pid


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--params-file", default="params.yaml")
    parser.add_argument("--profile", default=None)
    parser.add_argument("--model", default="grpo", help="which trained model to serve (without --url)")
    parser.add_argument("--url", default=None, help="a running server on loopback (memory is then not measured)")
    parser.add_argument("--requests", type=int, default=2000, help="requests per concurrency level")
    parser.add_argument("--concurrency", type=ints, default=[1, 16, 64])
    parser.add_argument("--time-limit-s", type=float, default=900, help="per level; unsent requests are counted")
    parser.add_argument("--out", default=None, help="default: reports/benchmark/load_<profile>.json")
    args = parser.parse_args()

    settings = read_settings(args.params_file)
    name = settings.profile_name(args.profile)
    prof = settings.profile(name)
    host = urlparse(args.url).hostname if args.url else settings.serve.host
    if host != "localhost" and not ipaddress.ip_address(host).is_loopback:
        print(f"error: the load test runs on loopback only; {host} is not a loopback address", file=sys.stderr)
        return 2
    rows = read_examples(split_file(settings.split, "validation"))
    sampling = prof.serve.sampling()
    levels = []
    with server_for(args, settings, name, prof) as (base_url, api_key, model, pid):
        memory_start = tree_rss_mib(pid)
        for concurrency in args.concurrency:
            before = tree_rss_mib(pid)
            result = asyncio.run(
                level(
                    settings.task,
                    base_url,
                    api_key,
                    model,
                    rows,
                    sampling,
                    args.requests,
                    concurrency,
                    settings.evaluate.request_timeout_s,
                    args.time_limit_s,
                )
            )
            result |= {"server_rss_mib_before": before, "server_rss_mib_after": tree_rss_mib(pid)}
            levels.append(result)
            print(
                f"concurrency {concurrency}: {result['ok']}/{args.requests} ok, {result['errors']} errors, "
                f"{result['requests_per_s']} req/s, p50 {result['p50_ms']} ms, p99 {result['p99_ms']} ms",
                flush=True,
            )
        alive = pid is None or psutil.pid_exists(pid)
    report = {
        "profile": name,
        "model": args.model if not args.url else None,
        "max_tokens": sampling.max_tokens,
        "rows_cycled": len(rows),
        "server_rss_mib_at_start": memory_start,
        "server_alive_at_end": alive,
        "machine": {"cpus": os.cpu_count(), "processor": platform.processor() or platform.machine()},
        "levels": levels,
    }
    out = project_path(args.out or f"reports/benchmark/load_{name}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    write_json(out, report)
    print("\n| concurrency | requests | ok | errors | req/s | p50 ms | p99 ms | server MiB before → after |")
    print("|---|---|---|---|---|---|---|---|")
    for r in levels:
        memory = f"{r['server_rss_mib_before']} → {r['server_rss_mib_after']}" if pid else "—"
        print(
            f"| {r['concurrency']} | {r['requests']} | {r['ok']} | {r['errors']} | {r['requests_per_s']} "
            f"| {r['p50_ms']} | {r['p99_ms']} | {memory} |"
        )
    print(f"\nwritten to {out}")
    return 0 if all(r["errors"] == 0 and r["not_sent"] == 0 for r in levels) else 1


if __name__ == "__main__":
    sys.exit(main())
