"""A hub model in the local Hugging Face cache: what of it is missing, and fetching it verified.

A GPU run must not download its model at its start: 15 GB inside the generation server's
start-up timeout, on every machine. ``make fetch-model`` (``python -m flows.fetch_model``)
downloads the whole repository into the cache beforehand and checks every file against the
hub's checksums (SHA-256 of the weights, git hashes of the small files); the preflight then
finds it complete offline (:func:`missing_files`).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

from people_relation.errors import PermanentError, TransientError

log = logging.getLogger(__name__)

CONFIG = "config.json"
SHARD_INDEX = "model.safetensors.index.json"  # sharded weights: the index names every shard
SINGLE_FILE = "model.safetensors"
TOKENIZER = ("tokenizer.json", "tokenizer_config.json")


def cached_file(source: str, name: str, revision: str | None = None) -> Path | None:
    """``name`` of hub model ``source`` in the local cache, or None. Never reaches the hub."""
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(source, name, revision=revision)
    return Path(found) if isinstance(found, str) else None


def missing_files(source: str, revision: str | None = None) -> list[str]:
    """The files training and serving read that are not in the local cache: the config, the
    tokenizer, and every weight shard (from the shard index, or the single weights file)."""
    missing = [name for name in (CONFIG, *TOKENIZER) if cached_file(source, name, revision) is None]
    index = cached_file(source, SHARD_INDEX, revision)
    if index is None:
        return missing + ([] if cached_file(source, SINGLE_FILE, revision) else [f"{SHARD_INDEX} or {SINGLE_FILE}"])
    shards = sorted(set(json.loads(index.read_text(encoding="utf-8"))["weight_map"].values()))
    return missing + [s for s in shards if cached_file(source, s, revision) is None]


@dataclass(frozen=True)
class Fetched:
    source: str
    revision: str  # the commit the cache holds
    folder: Path  # its snapshot folder
    files: int  # files checked against the hub's checksums
    gib: float


class FetchFailed(TransientError):
    """The hub could not be reached, or the download did not give the repository's files as
    the hub holds them; a second try resumes the download."""


def fetch_model(source: str, revision: str | None = None) -> Fetched:
    """Download hub model ``source`` (every file of the repository at ``revision``, default
    its main branch) into the local cache, resuming what an earlier try left, then check each
    file against the hub's checksums. Raises :class:`FetchFailed` naming the files that differ."""
    from huggingface_hub import HfApi, snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError, RepositoryNotFoundError, RevisionNotFoundError

    try:
        folder = Path(snapshot_download(source, revision=revision))
        log.info("Downloaded %s into %s; checking every file against the hub's checksums", source, folder)
        check = HfApi().verify_repo_checksums(source, revision=folder.name)
    except (RepositoryNotFoundError, RevisionNotFoundError) as err:
        raise PermanentError(
            f"model.source {source!r}{f' at {revision}' if revision else ''} is not on the hub "
            f"({type(err).__name__}): check the name, or log in (hf auth login) for a gated model"
        ) from err
    except (LocalEntryNotFoundError, OSError) as err:  # offline, no network, the hub down
        raise FetchFailed(
            f"could not download {source}: {str(err).splitlines()[0]}. Check the network and HF_HUB_OFFLINE "
            "(unset it), then run it again: the download resumes"
        ) from err
    problems = [f"{m['path']} ({m['algorithm']} {m['actual']}, the hub has {m['expected']})" for m in check.mismatches]
    problems += [f"{path} (not downloaded)" for path in check.missing_paths]
    if problems:
        raise FetchFailed(
            f"{source} at {check.revision}: {len(problems)} file(s) differ from the hub: {'; '.join(problems)}. "
            f"Remove {folder} and fetch again"
        )
    size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) / 1024**3
    return Fetched(source, check.revision, folder, check.checked_count, size)
