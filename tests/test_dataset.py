from pathlib import Path

import pytest

from people_relation.dataset import DataError, decode_csv_bytes, parse_csv_text, read_csv_file
from people_relation.task import load_task

HEADER = "text,people1,people2,label\n"
ROW = "1837年，威廉四世辞世，他的侄女维多利亚即位。,威廉四世,维多利亚,亲戚\n"
TASK = load_task(Path(__file__).resolve().parents[1] / "tasks" / "relation.yaml")


def parse(content: str, task=TASK):
    return parse_csv_text(content, "train", "train.csv", task)


def test_valid_rows_get_ids_and_line_numbers():
    rows = parse(HEADER + ROW + '"甲说，乙是他的妻子。",甲,乙,夫妻\n')
    assert [(r.id, r.line, r.label) for r in rows] == [("train-00001", 2, "亲戚"), ("train-00002", 3, "夫妻")]
    assert rows[1]["text"] == "甲说，乙是他的妻子。"
    assert rows[1].to_dict() == {
        "id": "train-00002",
        "split": "train",
        "line": 3,
        "text": "甲说，乙是他的妻子。",
        "people1": "甲",
        "people2": "乙",
        "label": "夫妻",
    }


def test_columns_may_come_in_any_order():
    rows = parse("label,text,people2,people1\n夫妻,甲娶了乙。,乙,甲\n")
    assert (rows[0]["people1"], rows[0]["people2"], rows[0].label) == ("甲", "乙", "夫妻")
    assert list(rows[0].inputs) == ["text", "people1", "people2"]  # the task's order, not the file's


def test_quoted_newline_keeps_line_numbers_right():
    content = HEADER + '"甲与乙\n是夫妻",甲,乙,夫妻\n' + "丙,丁,丙,丁,好友\n"
    with pytest.raises(DataError) as err:
        parse(content)
    assert "line 4: 5 fields where the header has 4" in str(err.value)


@pytest.mark.parametrize(
    "content,message",
    [
        ("text,people1,label\n甲乙,甲,夫妻\n", "line 1: header 'text,people1,label' lacks column(s) people2"),
        (HEADER + "甲与乙,甲,乙,朋友\n", "line 2: label '朋友' is not one of the 14 labels"),
        (HEADER + "甲与乙,甲,丙,夫妻\n", "line 2: people2 '丙' does not occur in the text"),
        (HEADER + "甲与乙,,乙,夫妻\n", "line 2: column 'people1' is empty"),
        (HEADER + "甲与乙,甲,乙,\n", "line 2: column 'label' is empty"),
        (HEADER, "no data rows"),
        ("", "the file is empty"),
        (HEADER + '"甲与乙,甲,乙,夫妻\n', "line 2: 1 fields where the header has 4"),
    ],
    ids=[
        "missing-column",
        "unknown-label",
        "name-not-in-text",
        "empty-name",
        "empty-label",
        "header-only",
        "empty",
        "unterminated-quote",
    ],
)
def test_bad_content_names_line_and_problem(content, message):
    with pytest.raises(DataError, match="train.csv") as err:
        parse(content)
    assert message in str(err.value)


def test_every_bad_row_is_reported_at_once():
    content = HEADER + ROW + "甲与乙,甲,丙,夫妻\n" + ROW + "甲与乙,甲,乙,朋友\n"
    with pytest.raises(DataError) as err:
        parse(content)
    text = str(err.value)
    assert "2 problem(s)" in text and "line 3:" in text and "line 5:" in text


def test_non_utf8_names_the_line():
    raw = (HEADER + ROW + "甲与乙,甲,乙,夫妻\n").encode("utf-8")
    raw = raw.replace("甲与乙".encode(), "甲与乙".encode("gbk"), 1)
    with pytest.raises(DataError, match=r"train.csv: line 3: not valid UTF-8"):
        decode_csv_bytes(raw, "train.csv", TASK)


def test_whitespace_only_file_is_empty():
    with pytest.raises(DataError, match="the file is empty"):
        decode_csv_bytes(b" \n\n", "train.csv", TASK)


def test_byte_order_mark_is_accepted():
    assert decode_csv_bytes(("\ufeff" + HEADER).encode(), "x", TASK).startswith("text,")


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match="cannot read the file"):
        read_csv_file(tmp_path / "nope.csv", "train", TASK)


def test_another_tasks_columns_and_labels_are_its_own():
    """A task with other input fields and labels reads its own header and checks its own labels."""
    raw = TASK.to_dict() | {
        "name": "stance",
        "inputs": {"claim": {}, "target": {"occurs_in": "claim"}},
        "labels": ["支持", "反对"],
        "none_label": None,
        "prior": None,
        "published": [],
    }
    raw["prompt"] = raw["prompt"] | {"user": "观点：{claim}\n对象：{target}", "rationale": "{target}：{label}"}
    stance = type(TASK).model_validate(raw)
    rows = parse("target,claim,label\n电动车,我支持电动车。,支持\n", stance)
    assert rows[0].inputs == {"claim": "我支持电动车。", "target": "电动车"}
    with pytest.raises(DataError) as err:
        parse("claim,target,label\n我支持电动车。,汽油车,夫妻\n", stance)
    assert "target '汽油车' does not occur in the claim" in str(err.value)
    assert "label '夫妻' is not one of the 2 labels (支持, 反对)" in str(err.value)
    with pytest.raises(DataError, match="lacks column.s. claim"):
        parse(HEADER + ROW, stance)


def test_real_files_are_valid(real_data):
    assert len(real_data["train"]) == 3105
    assert len(real_data["test"]) == 776


def test_label_balanced_sampling_evens_out_the_labels():
    from collections import Counter

    from people_relation.dataset import Example, label_balanced

    inputs = {"text": "甲乙", "people1": "甲", "people2": "乙"}
    rows = [Example(f"r{i}", "train", i, inputs, "不知道" if i < 90 else "夫妻") for i in range(100)]
    drawn = label_balanced(rows, seed=0, labels=TASK.labels)
    assert len(drawn) == 100
    counts = Counter(e.label for e in drawn)
    assert 35 <= counts["夫妻"] <= 65  # 10% of the rows, half of the draws
    assert {e.id for e in drawn if e.label == "夫妻"} <= {f"r{i}" for i in range(90, 100)}
    assert label_balanced(rows, 0, TASK.labels) == drawn and label_balanced(rows, 1, TASK.labels) != drawn
