"""The trained model's versions in MLflow's model registry: names, tags and the champion.

``people_relation.serving.pyfunc`` logs each version (a pyfunc that answers with our prompt);
versions carry their validation scores as tags, and the ``champion`` alias goes to the version
with the best validation weighted F1 when it is registered (choosing is validation's job);
``evaluate`` adds the test scores as tags, which report and never choose.
"""

from __future__ import annotations

from pathlib import Path

import mlflow

from people_relation.infra.io import PROJECT_ROOT
from people_relation.settings import Tracking

CHAMPION = "champion"
FINGERPRINT_TAG = "model_fingerprint"
# What the registered model's predict() needs; pinned to the versions of requirements.lock.
REQUIREMENTS = ("torch", "transformers", "tokenizers", "safetensors", "pandas", "pyyaml")


def locked_requirements(lock: Path = PROJECT_ROOT / "requirements.lock") -> list[str]:
    """``name==version`` of the packages predict() needs, as pinned in the lock file."""
    wanted = {name.lower() for name in REQUIREMENTS}
    pins = []
    for line in lock.read_text(encoding="utf-8").splitlines():
        name, sep, version = line.strip().partition("==")
        if sep and name.lower() in wanted:
            pins.append(f"{name}=={version.split()[0]}")
    return pins


def registered_name(tracking: Tracking, profile: str, run: str | None = None) -> str:
    """``<registered_model>-<profile>`` for the first run's models; another run's carry its name
    too (``people-relation-sentiment-sentiment-cpu``), so two tasks never share a name or a champion."""
    return f"{tracking.registered_model}-{run + '-' if run else ''}{profile}"


def crown_on_validation(name: str, version: str, key: str = "val_weighted_f1") -> bool:
    """Give ``version`` the ``champion`` alias when its validation ``key`` tag is at least the
    current champion's (a tie goes to the newer version: the same weights registered again carry
    the newer code). Test scores play no part. Returns whether the alias moved."""
    client = mlflow.MlflowClient()
    score = float(client.get_model_version(name, version).tags.get(key, "-1"))
    try:
        best = float(client.get_model_version_by_alias(name, CHAMPION).tags.get(key, "-1"))
    except mlflow.exceptions.MlflowException:  # no champion yet
        best = -1.0
    if score < 0 or score < best:
        return False
    client.set_registered_model_alias(name, CHAMPION, version)
    return True


def record_test_scores(name: str, fingerprint: str, scores: dict[str, float]) -> str | None:
    """Tag the registered version made from these model files with its test scores (``test_*``).
    They report only: the ``champion`` alias stays where validation put it. Returns the version."""
    client = mlflow.MlflowClient()
    try:
        versions = client.search_model_versions(f"name = '{name}' and tags.{FINGERPRINT_TAG} = '{fingerprint}'")
    except mlflow.exceptions.MlflowException:
        return None
    if not versions:
        return None
    version = max(versions, key=lambda v: int(v.version))
    for metric, value in scores.items():
        client.set_model_version_tag(name, str(version.version), f"test_{metric}", f"{value:.4f}")
    return str(version.version)
