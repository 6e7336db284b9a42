from collections import Counter

import pytest

from people_relation.dataset import Example
from people_relation.report import data_report, label_counts, nested_name_rows
from people_relation.split import make_splits, stratified_holdout
from people_relation.task import Task


def ids(rows):
    return [r.id for r in rows]


def test_published_split_keeps_the_published_test_set(real_data):
    splits = make_splits(real_data["train"], real_data["test"], "published", 0.2, 0.1, 42)
    assert ids(splits["test"]) == ids(real_data["test"])
    assert len(splits["train"]) + len(splits["validation"]) == 3105
    assert sorted(ids(splits["train"]) + ids(splits["validation"])) == sorted(ids(real_data["train"]))


def test_validation_is_stratified_and_seeded(real_data, task):
    a = make_splits(real_data["train"], real_data["test"], "published", 0.2, 0.1, 42)
    b = make_splits(real_data["train"], real_data["test"], "published", 0.2, 0.1, 42)
    c = make_splits(real_data["train"], real_data["test"], "published", 0.2, 0.1, 7)
    assert ids(a["validation"]) == ids(b["validation"])
    assert ids(a["validation"]) != ids(c["validation"])
    train_counts = Counter(e.label for e in real_data["train"])
    val_counts = Counter(e.label for e in a["validation"])
    for label in task.labels:
        assert abs(val_counts[label] - 0.1 * train_counts[label]) <= 2, label


def test_stratified_split_is_8_2_by_label_and_never_splits_an_input(real_data, task):
    splits = make_splits(real_data["train"], real_data["test"], "stratified", 0.2, 0.1, 42)
    total = sum(len(v) for v in splits.values())
    assert total == 3881
    assert len(splits["test"]) == pytest.approx(776, abs=8)
    everything = Counter(e.label for rows in real_data.values() for e in rows)
    test_counts = Counter(e.label for e in splits["test"])
    for label in task.labels:
        assert abs(test_counts[label] - 0.2 * everything[label]) <= 2, label
    sides = [{e.key for e in rows} for rows in splits.values()]
    assert not (sides[0] & sides[1]) and not (sides[0] & sides[2]) and not (sides[1] & sides[2])


def test_unknown_strategy_and_bad_fraction():
    with pytest.raises(ValueError, match="unknown split strategy 'random'"):
        make_splits([], [], "random", 0.2, 0.1, 1)
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        stratified_holdout([], 1.5, 1)


def test_zero_fraction_holds_out_nothing(real_data):
    kept, held = stratified_holdout(real_data["test"], 0.0, 3)
    assert held == [] and ids(kept) == ids(real_data["test"])


def _ex(i, text, p1, p2, label, split="train"):
    return Example(f"{split}-{i}", split, i, {"text": text, "people1": p1, "people2": p2}, label)


def test_report_counts_duplicates_conflicts_and_leakage(task):
    train = [
        _ex(1, "甲与乙", "甲", "乙", "夫妻"),
        _ex(2, "甲与乙", "甲", "乙", "情侣"),
        _ex(3, "丙与丁", "丙", "丁", "好友"),
        _ex(4, "泰勒即伊丽莎白·泰勒", "泰勒", "伊丽莎白·泰勒", "同一个人"),
    ]
    test = [_ex(1, "丙与丁", "丙", "丁", "好友", "test"), _ex(2, "甲与乙", "乙", "甲", "夫妻", "test")]
    report = data_report({"train": train, "test": test}, task)
    assert report["rows"] == {"train": 4, "test": 2, "total": 6}
    assert report["labels"] == task.labels
    assert list(report["label_counts"]["train"]) == task.labels  # every label, in the task's order
    assert report["label_counts"]["train"]["夫妻"] == 1 and report["label_counts"]["test"]["亲戚"] == 0
    assert report["duplicates"]["repeated_rows"] == 2
    assert report["duplicates"]["keys_with_conflicting_labels"] == 1
    assert report["leakage"]["train_vs_test"] == {"shared_keys": 1, "shared_texts": 2, "second_rows_with_shared_key": 1}
    assert report["nested_name_rows"] == 1
    assert nested_name_rows(train, list(task.mentions)) == ["train-4"]
    assert report["same_person_pairs"] == 0
    assert report["text_length_chars"]["train"]["max"] == len("泰勒即伊丽莎白·泰勒")


def test_report_on_the_real_data_matches_its_documented_quirks(real_data, task):
    report = data_report(real_data, task)
    assert report["rows"] == {"train": 3105, "test": 776, "total": 3881}
    assert report["label_counts"]["train"]["不知道"] == 820 and report["label_counts"]["test"]["父母"] == 128
    assert report["duplicates"]["repeated_rows"] == 78
    assert report["duplicates"]["keys_with_conflicting_labels"] == 8
    assert report["leakage"]["train_vs_test"]["shared_keys"] == 20
    assert report["leakage"]["train_vs_test"]["shared_texts"] == 244
    assert report["text_length_chars"]["total"]["max"] == 217


def test_label_counts_and_the_name_checks_follow_what_they_are_given(task):
    rows = [
        _ex(1, "甲与乙", "甲", "乙", "夫妻"),
        _ex(2, "甲即甲", "甲", "甲", "同一个人"),
        _ex(3, "丙与丁", "丙", "丁", "夫妻"),
    ]
    assert label_counts(rows, ["同一个人", "夫妻", "好友"]) == {"同一个人": 1, "夫妻": 2, "好友": 0}
    assert data_report({"train": rows}, task)["same_person_pairs"] == 1
    # a task without mention fields has no name checks (and one split no leakage)
    plain = Task.model_validate(task.model_dump() | {"inputs": {f: {} for f in task.fields}})
    assert plain.mentions == {}
    report = data_report({"train": rows}, plain)
    assert "same_person_pairs" not in report and "nested_name_rows" not in report and "leakage" not in report
