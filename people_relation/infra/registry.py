"""The trained model in MLflow's model registry, as a pyfunc that answers with our prompt.

``mlflow.pyfunc.load_model("models:/people-relation-cpu@champion").predict(df)`` takes a
DataFrame with ``text``, ``people1``, ``people2`` and returns the completion, the reasoning,
the answer and whether the format held, generated greedily with the published prompt (our
tokenizer loader, not AutoTokenizer, which would garble the CPU model's vocabulary).

Versions carry their validation scores as tags; ``evaluate`` adds the test scores and moves
the ``champion`` alias to the version with the best test weighted F1.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import mlflow

from people_relation.infra.io import PROJECT_ROOT
from people_relation.settings import Tracking

CHAMPION = "champion"
FINGERPRINT_TAG = "model_fingerprint"
# What predict() needs; pinned to the versions of requirements.lock.
REQUIREMENTS = ("torch", "transformers", "tokenizers", "safetensors", "pandas", "pyyaml")
INPUT_COLUMNS = ("text", "people1", "people2")


class RelationModel(mlflow.pyfunc.PythonModel):
    def load_context(self, context: Any) -> None:
        from people_relation.training.models import load_causal_lm, load_model_tokenizer

        folder = Path(context.artifacts["model"])
        config = context.model_config or {}
        self.model = load_causal_lm(folder)
        self.tokenizer = load_model_tokenizer(folder, config.get("tokenizer", "project"))
        self.max_new_tokens = int(config.get("max_new_tokens", 48))
        self.batch_size = int(config.get("batch_size", 16))

    def predict(self, context, model_input, params=None):  # no type hints: MLflow would read them as a schema
        import pandas as pd

        from people_relation.dataset import Example
        from people_relation.parsing import parse_completion
        from people_relation.training.generation import generate_completions

        frame = pd.DataFrame(model_input)
        missing = [c for c in INPUT_COLUMNS if c not in frame.columns]
        if missing:
            raise ValueError(f"predict needs the columns {list(INPUT_COLUMNS)}; missing {missing}")
        rows = [
            Example(
                id=str(i),
                split="predict",
                line=i,
                text=str(r.text),
                people1=str(r.people1),
                people2=str(r.people2),
                label="",
            )
            for i, r in enumerate(frame.itertuples(index=False))
        ]
        completions = generate_completions(self.model, self.tokenizer, rows, self.max_new_tokens, self.batch_size)
        parsed = [parse_completion(c) for c in completions]
        return pd.DataFrame(
            {
                "completion": completions,
                "think": [p.think for p in parsed],
                "answer": [p.answer for p in parsed],
                "format_ok": [p.format_ok for p in parsed],
            }
        )


def locked_requirements(lock: Path = PROJECT_ROOT / "requirements.lock") -> list[str]:
    """``name==version`` of the packages predict() needs, as pinned in the lock file."""
    wanted = {name.lower() for name in REQUIREMENTS}
    pins = []
    for line in lock.read_text(encoding="utf-8").splitlines():
        name, sep, version = line.strip().partition("==")
        if sep and name.lower() in wanted:
            pins.append(f"{name}=={version.split()[0]}")
    return pins


def registered_name(tracking: Tracking, profile: str) -> str:
    return f"{tracking.registered_model}-{profile}"


def log_and_register(
    model_dir: Path, name: str, tokenizer: str, max_new_tokens: int, tags: dict[str, str], metrics: dict[str, float]
) -> Any:
    """Log ``model_dir`` as a pyfunc model of the active run and register a new version of ``name``."""
    info = mlflow.pyfunc.log_model(
        name="model",
        python_model=RelationModel(),
        artifacts={"model": str(model_dir)},
        code_paths=[str(Path(__file__).resolve().parents[1])],  # the people_relation package
        model_config={"tokenizer": tokenizer, "max_new_tokens": max_new_tokens},
        pip_requirements=locked_requirements(),
        registered_model_name=name,
        tags=tags,
    )
    if metrics:
        mlflow.log_metrics(metrics, model_id=info.model_id)
    client = mlflow.MlflowClient()
    version = info.registered_model_version
    for key, value in tags.items():
        client.set_model_version_tag(name, str(version), key, value)
    for key, value in metrics.items():
        client.set_model_version_tag(name, str(version), key, f"{value:.4f}")
    return info


def record_test_scores(name: str, fingerprint: str, scores: dict[str, float], key: str = "weighted_f1") -> str | None:
    """Tag the registered version made from these model files with its test scores, and give it
    the ``champion`` alias when its test ``key`` beats the current champion's. Returns the version."""
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
    try:
        champion = client.get_model_version_by_alias(name, CHAMPION)
        best = float(champion.tags.get(f"test_{key}", "-1"))
    except mlflow.exceptions.MlflowException:
        best = -1.0
    if scores[key] > best:
        client.set_registered_model_alias(name, CHAMPION, str(version.version))
    return str(version.version)
