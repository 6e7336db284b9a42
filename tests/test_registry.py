"""Test scores on registered versions and the `champion` alias, in a real MLflow registry."""

from __future__ import annotations

import mlflow
import pytest

from people_relation.infra.registry import CHAMPION, FINGERPRINT_TAG, record_test_scores

pytestmark = pytest.mark.integration


def test_the_best_test_score_holds_the_champion_alias(tmp_path):
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    client = mlflow.MlflowClient()
    name = "people-relation-test"
    client.create_registered_model(name)
    for fingerprint in ("aaa", "bbb", "ccc", "ddd"):
        client.create_model_version(name, source=str(tmp_path), tags={FINGERPRINT_TAG: fingerprint})

    def scores(f1):
        return {"weighted_f1": f1, "accuracy": f1}

    assert record_test_scores(name, "aaa", scores(0.50)) == "1"
    assert str(client.get_model_version_by_alias(name, CHAMPION).version) == "1"
    assert record_test_scores(name, "bbb", scores(0.40)) == "2"  # worse: the alias stays
    assert str(client.get_model_version_by_alias(name, CHAMPION).version) == "1"
    assert client.get_model_version(name, "2").tags["test_weighted_f1"] == "0.4000"
    assert record_test_scores(name, "ccc", scores(0.60)) == "3"  # better: the alias moves
    assert str(client.get_model_version_by_alias(name, CHAMPION).version) == "3"
    assert record_test_scores(name, "ddd", scores(0.60001)) == "4"  # a tie: the newer version
    assert str(client.get_model_version_by_alias(name, CHAMPION).version) == "4"
    assert record_test_scores(name, "zzz", scores(0.99)) is None  # files no version was made from
    assert record_test_scores("no-such-model", "aaa", scores(0.99)) is None
