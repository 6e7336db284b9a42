"""The keyword rules: each relation's words, whose word it is, and the sentences built to
trip them (a third person's word, the names reversed, two words, one name inside the other)."""

from __future__ import annotations

import pytest

from people_relation.keywords import CUES, MUTUAL, SHARED_HEAD, UNKNOWN, explain_pair, label_pair
from people_relation.priors import PRIORS


@pytest.mark.parametrize(
    ("text", "people1", "people2", "label"),
    [
        ("张三的妻子李梅出席了晚会。", "张三", "李梅", "夫妻"),
        ("刘德伟和陈晓欣结婚后，一直过着幸福的生活。", "刘德伟", "陈晓欣", "夫妻"),
        ("张三与李梅于1990年结婚。", "张三", "李梅", "夫妻"),
        ("周海婴是鲁迅之子。", "周海婴", "鲁迅", "父母"),
        ("2003年，李兆会从父亲李海仓手里接手海鑫钢铁集团。", "李兆会", "李海仓", "父母"),
        ("王五的胞弟王六在北京工作。", "王五", "王六", "兄弟姐妹"),
        ("小明的外孙女小红今年十岁。", "小明", "小红", "祖孙"),
        ("聂建华毕业于中国音乐学院，师从女高音歌唱家张权教授学习歌剧。", "聂建华", "张权", "师生"),
        ("于佑福，女，天津人，1927年出生，师承高德明。", "于佑福", "高德明", "师生"),
        ("赵一和钱二是大学同学。", "赵一", "钱二", "同学"),
        ("孙三的师兄李四也来了。", "孙三", "李四", "同门"),
        ("梁启超的弟子中有胡适，徐志摩和王庚。", "胡适", "王庚", "同门"),
        ("周五的女友吴六是一名演员。", "周五", "吴六", "情侣"),
        ("郑七与冯八是多年的好友。", "郑七", "冯八", "好友"),
        ("陈九的秘书褚十替他回了信。", "陈九", "褚十", "上下级"),
        ("卫甲与蒋乙合作了一部电影。", "卫甲", "蒋乙", "合作"),
        ("这本书的作者是鲁虹，孙振华。", "鲁虹", "孙振华", "合作"),
        ("严复，原名宗光，字又陵。", "严复", "又陵", "同一个人"),
        ("林巧稚是钟南山的姑婆。", "林巧稚", "钟南山", "亲戚"),
        ("杨丙和秦丁一起去了上海。", "杨丙", "秦丁", "不知道"),
    ],
)
def test_each_relation_from_its_words(task, text: str, people1: str, people2: str, label: str) -> None:
    assert label_pair(text, people1, people2) == label
    # the task's prior (what a `labels: prior` warm-up teaches) is these rules
    assert task.prior_answer({"text": text, "people1": people1, "people2": people2}) == label


@pytest.mark.parametrize(
    ("text", "people1", "people2"),
    [
        # the word belongs to a third person standing between them
        ("张三的妻子李梅和王五是大学同学。", "张三", "王五"),
        ("张三的妻子李梅的同学王芳也来了。", "张三", "王芳"),
        # the word is the first name's, in a clause that ends before the second name
        ("李四是张三的表弟，也是王五的邻居。", "王五", "张三"),
        # both names present, the word about someone else entirely
        ("王五的父亲是教师，赵六也在那所学校。", "王五", "赵六"),
        # a conjunction does not carry a one-sided word: 父亲 is a third person's
        ("张三和李四的父亲王五", "张三", "李四"),
    ],
)
def test_a_third_persons_word_does_not_count(text: str, people1: str, people2: str) -> None:
    assert label_pair(text, people1, people2) == "不知道", explain_pair(text, people1, people2)


def test_the_order_of_the_names_does_not_matter() -> None:
    for text, a, b in [
        ("李梅是张三的妻子。", "李梅", "张三"),
        ("张三的妻子李梅出席了晚会。", "张三", "李梅"),
        ("张三与李梅于1990年结婚。", "张三", "李梅"),
    ]:
        assert label_pair(text, a, b) == label_pair(text, b, a) == "夫妻"


def test_the_longest_word_wins() -> None:
    # 未婚妻 holds 妻, 师弟 and 弟子 hold 弟, 外孙 holds 孙, 表弟 holds 弟
    assert label_pair("张三的未婚妻李梅", "张三", "李梅") == "情侣"
    assert label_pair("张三的师弟李四", "张三", "李四") == "同门"
    assert label_pair("张三的弟子李四", "张三", "李四") == "师生"
    assert label_pair("张三的外孙李四", "张三", "李四") == "祖孙"
    assert label_pair("张三的表弟李四", "张三", "李四") == "亲戚"


def test_two_words_for_one_pair() -> None:
    # the word touching both names decides; a word in a later clause is another's
    assert label_pair("张三的妻子李梅，是王五的学生。", "张三", "李梅") == "夫妻"
    # a chain of aliases names one person
    assert label_pair("严复，原名宗光，字又陵。", "宗光", "又陵") == "同一个人"


def test_one_name_inside_the_other_is_one_person() -> None:
    assert label_pair("伊丽莎白·泰勒（简称泰勒）是演员。", "伊丽莎白·泰勒", "泰勒") == "同一个人"


def test_the_cue_says_why(task) -> None:
    cue = explain_pair("李梅是张三的妻子。", "李梅", "张三")
    assert cue is not None and (cue.label, cue.word, cue.place) == ("夫妻", "妻子", "after")
    assert task.prior_explanation({"text": "李梅是张三的妻子。", "people1": "李梅", "people2": "张三"}) == cue
    assert explain_pair("杨丙和秦丁一起去了上海。", "杨丙", "秦丁") is None


def test_a_name_missing_from_the_text_is_unknown() -> None:
    assert label_pair("张三的妻子出席了晚会。", "张三", "李梅") == "不知道"


def test_every_word_maps_to_a_label(task) -> None:
    assert UNKNOWN == task.none_label
    assert set(CUES) == set(task.labels) - {task.none_label}
    words = {w for ws in CUES.values() for w in ws}
    assert len(words) == sum(len(ws) for ws in CUES.values()), "a word listed under two labels"
    assert MUTUAL <= words
    assert set(SHARED_HEAD.values()) <= set(task.labels)
    # the prior the task names answers exactly the labels but the none label
    assert task.prior == "keywords" and PRIORS["keywords"].labels == set(task.labels) - {task.none_label}
    assert PRIORS["keywords"].problem(task) is None
