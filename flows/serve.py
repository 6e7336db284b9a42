"""serve: put a trained model behind vLLM's OpenAI-compatible API.

As a pipeline step (``dvc repro serve@<run>``) it starts the server on ``serve.model`` of the
profile, waits for ``/health``, asks ``serve.smoke_rows`` validation rows through the
chat endpoint, checks the answers parse, and stops the server; the server log and a
report (command, start-up time, answers) land in ``reports/serve/<profile>/``.

To keep serving for other clients: ``python -m flows.serve --hold`` (Ctrl-C stops it).
"""

from __future__ import annotations

import argparse
from typing import Any

import mlflow
from prefect import flow, get_run_logger

from flows.cli import run
from people_relation.infra.io import project_path, read_settings, write_json_atomic
from people_relation.infra.paths import resolve_arm
from people_relation.infra.tracking import mlflow_run
from steps.serve import serve_until_stopped, served_model, smoke_check

REPORT_FILE = "server.json"
LOG_FILE = "server.log"


@flow(name="serve", log_prints=True)
def serve_flow(
    params_file: str = "params.yaml",
    run: str | None = None,
    profile_name: str | None = None,
    model: str | None = None,
    hold: bool = False,
) -> dict[str, Any]:
    logger = get_run_logger()
    arm = resolve_arm(read_settings(params_file, run), profile_name)
    settings, name, prof = arm.settings, arm.name, arm.profile
    phase = model or settings.serve.model
    reports = project_path(settings.serve.reports_dir) / name
    # the log (times, ports) and the smoke answers in flight are not pipeline outputs
    state = project_path(settings.train.checkpoints_dir) / "serve" / name
    state.mkdir(parents=True, exist_ok=True)
    if not hold:  # serving for clients leaves the pipeline's report alone
        (reports / REPORT_FILE).unlink(missing_ok=True)  # never leave a report of an older server
    smoke_file = state / "smoke_predictions.jsonl"
    smoke_file.unlink(missing_ok=True)
    logged = {"profile": name, "model": phase, "serve": settings.serve, f"{name}.serve": prof.serve}
    with mlflow_run(settings.tracking, name, "serve", logged):
        try:
            # the server log is kept even when start-up fails: it is what explains the failure
            model_dir = arm.model(phase)
            with served_model(settings.serve, prof, model_dir, state / LOG_FILE, name) as server:
                smoke = smoke_check(
                    settings.task,
                    settings.split,
                    settings.serve.smoke_rows,
                    server,
                    prof.serve.sampling(),
                    settings.evaluate.client(),
                    smoke_file,
                )
                if hold:
                    serve_until_stopped(server)
        finally:
            if (state / LOG_FILE).is_file():
                mlflow.log_artifact(str(state / LOG_FILE), "serve")
            smoke_file.unlink(missing_ok=True)
        import vllm  # the version that served, for the report

        report = {
            "profile": name,
            "model": phase,
            "served_model_name": server.model,
            "vllm_version": vllm.__version__,
            "smoke": smoke,
        }
        # the start-up time is the run's (MLflow), not the output's: the report depends on its inputs only
        mlflow.log_metrics({"startup_seconds": server.startup_s, "smoke_format_ok_rate": smoke["format_ok_rate"]})
        if not hold:
            reports.mkdir(parents=True, exist_ok=True)
            write_json_atomic(reports / REPORT_FILE, report)
            mlflow.log_artifact(str(reports / REPORT_FILE), "serve")
    logger.info(
        "Served %s/%s: healthy after %.1fs, %d/%d smoke answers well-formed",
        name,
        phase,
        server.startup_s,
        round(smoke["format_ok_rate"] * smoke["rows"]),
        smoke["rows"],
    )
    return report


def _arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--profile", dest="profile_name", default=None, help="another profile than the run's (runs.<run>.profile)"
    )
    parser.add_argument("--model", default=None, help="grpo, warmup or base (default: serve.model)")
    parser.add_argument("--hold", dest="hold", action="store_true", help="keep serving until Ctrl-C")


if __name__ == "__main__":
    run(serve_flow, add_arguments=_arguments)
