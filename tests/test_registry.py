"""Scores on registered versions and the `champion` alias, in a real MLflow registry: validation
chooses the champion, test scores only report."""

from __future__ import annotations

import mlflow
import pytest

from people_relation.infra.registry import CHAMPION, FINGERPRINT_TAG, crown_on_validation, record_test_scores

pytestmark = pytest.mark.integration


def test_the_best_validation_score_holds_the_champion_alias_and_test_scores_only_report(tmp_path):
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    client = mlflow.MlflowClient()
    name = "people-relation-test"
    client.create_registered_model(name)

    def register(fingerprint: str, val: float) -> str:
        tags = {FINGERPRINT_TAG: fingerprint, "val_weighted_f1": f"{val:.4f}"}
        return str(client.create_model_version(name, source=str(tmp_path), tags=tags).version)

    def champion() -> str:
        return str(client.get_model_version_by_alias(name, CHAMPION).version)

    def scores(f1: float) -> dict[str, float]:
        return {"weighted_f1": f1, "accuracy": f1}

    assert crown_on_validation(name, register("aaa", 0.50)) and champion() == "1"
    assert not crown_on_validation(name, register("bbb", 0.40)) and champion() == "1"  # worse: the alias stays
    assert crown_on_validation(name, register("ccc", 0.60)) and champion() == "3"  # better: the alias moves
    assert crown_on_validation(name, register("ddd", 0.60)) and champion() == "4"  # a tie: the newer version
    # the best test score moves nothing: test only reports
    assert record_test_scores(name, "bbb", scores(0.90)) == "2"
    assert record_test_scores(name, "ddd", scores(0.40)) == "4"
    assert champion() == "4"
    assert client.get_model_version(name, "2").tags["test_weighted_f1"] == "0.9000"
    # a version without a validation score is never crowned
    bare = str(client.create_model_version(name, source=str(tmp_path), tags={FINGERPRINT_TAG: "eee"}).version)
    assert not crown_on_validation(name, bare) and champion() == "4"
    assert record_test_scores(name, "zzz", scores(0.99)) is None  # files no version was made from
    assert record_test_scores("no-such-model", "aaa", scores(0.99)) is None
