"""fetch-model: a profile's hub model into the local Hugging Face cache, checked, before a run.

    python -m flows.fetch_model --profile qwen2.5-7b        # = make fetch-model PROFILE=qwen2.5-7b

Downloads every file of the profile's ``model.source`` repository (resuming a broken
download), checks each against the hub's checksums, and prints where it is. Run it on every
machine that trains or serves (or once, with ``HF_HOME`` on a shared filesystem); the
preflight's ``model`` check then passes without the network, and no run downloads under a
timeout. A profile whose model is a local folder (or built here) has nothing to fetch.
"""

from __future__ import annotations

import argparse

from prefect import flow, get_run_logger

from flows.cli import run
from people_relation.infra.io import project_path, read_settings
from people_relation.infra.paths import resolve_arm
from people_relation.training.hub import fetch_model, missing_files


@flow(name="fetch-model", log_prints=True)
def fetch_model_flow(params_file: str = "params.yaml", run: str | None = None, profile_name: str | None = None) -> dict:
    logger = get_run_logger()
    arm = resolve_arm(read_settings(params_file, run), profile_name)
    source = arm.profile.model.source
    if arm.profile.model.built_here or project_path(source).exists():
        logger.info("Profile %s starts from %s: nothing to fetch", arm.name, source)
        return {"profile": arm.name, "source": source, "fetched": False}
    logger.info(
        "Fetching %s for profile %s (missing here: %s)", source, arm.name, ", ".join(missing_files(source)) or "none"
    )
    fetched = fetch_model(source)
    logger.info(
        "%s at %s: %d files, %.1f GiB, checked against the hub, in %s",
        source,
        fetched.revision,
        fetched.files,
        fetched.gib,
        fetched.folder,
    )
    return {"profile": arm.name, "source": source, "fetched": True, "revision": fetched.revision}


def _arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--profile",
        dest="profile_name",
        default=None,
        help="the profile whose model (default: the run's, runs.<run>.profile)",
    )


if __name__ == "__main__":
    run(fetch_model_flow, add_arguments=_arguments)
