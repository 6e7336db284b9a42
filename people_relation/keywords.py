"""Keyword rules: a relation labeller written from the language, with no training.

It reads what a sentence says *between* the two people, with kinship and social words any
Chinese reader knows (妻子 → 夫妻, 之子 → 父母, 师从 → 师生, 原名 → 同一个人 ...), and answers
不知道 when nothing ties the two together. It stands for the prior knowledge a pretrained
model brings to the task (real, imperfect, and knowing nothing of this dataset's labels):
the ``cpu-prior`` profile's warm-up learns its answers, and GRPO then meets the gold labels
only through the rewards.

Attachment is what makes a word count for the pair, and is decided by position alone:

* **between** the names (``张三的妻子李梅``, ``李梅，字子美``): the word must touch both names
  through filler only (的, 之, 与, 是, punctuation, modifiers such as 长/大/亲). A name or any
  other content on either side means the word belongs to a third person (``张三的妻子李梅的
  同学王芳``: 张三 and 王芳 are 不知道).
* **after** both names: a copula between them (``李梅是张三的妻子``) takes any word right after
  the second name; a conjunction (``张三和李梅结婚``, ``张三与李梅是同学``) takes only a word for
  a relation both share (结婚, 同学, 合作, 好友 ...).
* **before** both names, for a listed pair (``梁启超的弟子有胡适、徐志摩``): fellow students of
  one teacher are 同门, children of one parent 兄弟姐妹, co-authors and co-stars 合作.

Words are matched longest first, so 未婚妻 is 情侣 (not 夫妻), 师弟 is 同门, 弟子 is 师生
(neither 兄弟姐妹), 外孙 is 祖孙 and 表弟 亲戚. Relations are unordered, as the labels are: 父母
covers parent and child alike. The pure function :func:`label_pair` is the whole labeller;
:func:`explain_pair` also says which word decided and where it stood.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

UNKNOWN = "不知道"

# The words of each relation. Several also name a role (妻子 is a wife): a relation is
# unordered in the labels, so the role's direction does not matter.
CUES: dict[str, tuple[str, ...]] = {
    "夫妻": (
        "妻子",
        "丈夫",
        "老公",
        "老婆",
        "夫人",
        "太太",
        "爱人",
        "妻",
        "夫婿",
        "夫君",
        "前妻",
        "前夫",
        "亡妻",
        "遗孀",
        "原配",
        "续弦",
        "结发",
        "王后",
        "皇后",
        "妃子",
        "贵妃",
        "嫔",
        "结婚",
        "婚后",
        "成婚",
        "完婚",
        "新婚",
        "婚姻",
        "离婚",
        "嫁给",
        "嫁",
        "娶",
        "迎娶",
        "夫妇",
        "伉俪",
        "夫妻",
        "配偶",
        "贤内助",
    ),
    "父母": (
        "父亲",
        "母亲",
        "爸爸",
        "妈妈",
        "爹",
        "娘",
        "父",
        "母",
        "儿子",
        "女儿",
        "之子",
        "之女",
        "长子",
        "次子",
        "三子",
        "幼子",
        "独子",
        "长女",
        "次女",
        "幼女",
        "独女",
        "养子",
        "养女",
        "养父",
        "养母",
        "生父",
        "生母",
        "继父",
        "继母",
        "义父",
        "义母",
        "父子",
        "母子",
        "父女",
        "母女",
        "爱子",
        "爱女",
        "千金",
        "子女",
        "儿女",
        "所生",
        "生下",
        "之父",
        "之母",
    ),
    "兄弟姐妹": (
        "哥哥",
        "姐姐",
        "弟弟",
        "妹妹",
        "胞弟",
        "胞兄",
        "胞妹",
        "胞姐",
        "兄长",
        "长兄",
        "大哥",
        "二哥",
        "三哥",
        "大姐",
        "二姐",
        "兄",
        "弟",
        "姐",
        "妹",
        "兄弟",
        "姐妹",
        "兄妹",
        "姐弟",
        "孪生",
        "双胞胎",
        "手足",
        "同胞",
    ),
    "祖孙": (
        "祖父",
        "祖母",
        "爷爷",
        "奶奶",
        "外公",
        "外婆",
        "姥姥",
        "姥爷",
        "外祖父",
        "外祖母",
        "曾祖父",
        "曾祖母",
        "孙子",
        "孙女",
        "外孙",
        "外孙女",
        "之孙",
        "长孙",
        "嫡孙",
        "曾孙",
        "祖孙",
        "爷孙",
        "孙儿",
    ),
    "师生": (
        "师从",
        "弟子",
        "学生",
        "老师",
        "导师",
        "恩师",
        "门生",
        "门徒",
        "徒弟",
        "师父",
        "师傅",
        "拜师",
        "受业",
        "授业",
        "受教",
        "高足",
        "爱徒",
        "学徒",
        "传人",
        "收徒",
        "师承",
        "拜入",
        "求学于",
        "学艺",
        "师生",
        "业师",
    ),
    "同学": ("同学", "校友", "同窗", "同班", "同届", "学长", "学姐", "学弟", "学妹", "室友"),
    "同门": ("师兄", "师弟", "师姐", "师妹", "同门", "师兄弟", "师姐妹", "同出"),
    "情侣": (
        "恋人",
        "男友",
        "女友",
        "男朋友",
        "女朋友",
        "情侣",
        "恋情",
        "相恋",
        "恋爱",
        "热恋",
        "拍拖",
        "交往",
        "绯闻",
        "未婚妻",
        "未婚夫",
        "订婚",
        "情人",
        "女伴",
        "男伴",
        "约会",
        "分手",
        "前男友",
        "前女友",
        "同居",
        "初恋",
        "暗恋",
        "追求",
    ),
    "好友": (
        "好友",
        "挚友",
        "朋友",
        "好朋友",
        "密友",
        "知己",
        "至交",
        "老友",
        "闺蜜",
        "哥们",
        "故交",
        "友人",
        "友谊",
        "交好",
        "莫逆",
        "发小",
        "死党",
        "好姐妹",
        "好兄弟",
        "知音",
        "相识",
        "结识",
        "结拜",
        "义兄",
        "义弟",
    ),
    "上下级": (
        "下属",
        "部下",
        "秘书",
        "上司",
        "上级",
        "下级",
        "领导",
        "助手",
        "助理",
        "副手",
        "老板",
        "部将",
        "属下",
        "麾下",
        "手下",
        "幕僚",
        "亲信",
        "保镖",
        "司机",
        "提拔",
        "部属",
        "顶头上司",
        "大臣",
        "宠臣",
        "重用",
        "侍从",
        "侍卫",
        "副官",
        "参谋",
        "雇主",
        "员工",
    ),
    "合作": (
        "合作",
        "搭档",
        "合著",
        "合唱",
        "合演",
        "联手",
        "携手",
        "合写",
        "合拍",
        "联袂",
        "对唱",
        "同台",
        "合伙",
        "合资",
        "组合",
        "共同",
        "共事",
        "同事",
        "主演",
        "合编",
        "合译",
        "主编",
        "编著",
        "作者",
        "演唱",
        "执导",
        "作词",
        "作曲",
    ),
    "同一个人": (
        "原名",
        "本名",
        "又名",
        "字",
        "号",
        "别名",
        "笔名",
        "艺名",
        "化名",
        "曾用名",
        "乳名",
        "小名",
        "英文名",
        "外号",
        "绰号",
        "人称",
        "即",
        "又称",
        "别号",
        "谥号",
        "法号",
        "网名",
        "昵称",
        "真名",
        "简称",
        "原姓名",
        "也就是",
        "本姓",
        "改名",
        "更名",
        "初名",
        "自号",
        "表字",
    ),
    "亲戚": (
        "表哥",
        "表姐",
        "表弟",
        "表妹",
        "表兄",
        "表叔",
        "表舅",
        "舅舅",
        "舅父",
        "舅",
        "姑妈",
        "姑姑",
        "姑",
        "姨妈",
        "姨",
        "叔叔",
        "伯父",
        "伯伯",
        "叔父",
        "伯母",
        "婶婶",
        "侄子",
        "侄女",
        "侄儿",
        "侄",
        "外甥",
        "外甥女",
        "甥",
        "堂兄",
        "堂弟",
        "堂姐",
        "堂妹",
        "堂哥",
        "姑父",
        "姨父",
        "岳父",
        "岳母",
        "丈人",
        "公公",
        "婆婆",
        "儿媳",
        "女婿",
        "媳妇",
        "嫂子",
        "嫂",
        "弟媳",
        "姐夫",
        "妹夫",
        "舅子",
        "连襟",
        "妯娌",
        "亲戚",
        "亲属",
        "远亲",
        "姑婆",
        "叔祖",
        "外叔祖",
        "族弟",
        "族兄",
        "宗亲",
        "表亲",
        "姻亲",
        "亲家",
    ),
}

# Words for a relation both people share: after a conjunction (张三和李梅结婚) they relate the two.
MUTUAL: frozenset[str] = frozenset(
    {
        "结婚",
        "成婚",
        "完婚",
        "新婚",
        "离婚",
        "夫妇",
        "伉俪",
        "夫妻",
        "婚姻",
        "兄弟",
        "姐妹",
        "兄妹",
        "姐弟",
        "孪生",
        "双胞胎",
        "手足",
        "祖孙",
        "爷孙",
        "父子",
        "母子",
        "父女",
        "母女",
        "师生",
        "同学",
        "校友",
        "同窗",
        "同班",
        "同届",
        "室友",
        "同门",
        "师兄弟",
        "师姐妹",
        "恋人",
        "情侣",
        "恋情",
        "相恋",
        "恋爱",
        "热恋",
        "拍拖",
        "交往",
        "绯闻",
        "订婚",
        "约会",
        "分手",
        "同居",
        "好友",
        "挚友",
        "朋友",
        "好朋友",
        "密友",
        "知己",
        "至交",
        "老友",
        "闺蜜",
        "故交",
        "友谊",
        "交好",
        "莫逆",
        "发小",
        "死党",
        "好姐妹",
        "好兄弟",
        "知音",
        "相识",
        "结识",
        "结拜",
        "合作",
        "搭档",
        "合著",
        "合唱",
        "合演",
        "联手",
        "携手",
        "合写",
        "合拍",
        "联袂",
        "对唱",
        "同台",
        "合伙",
        "合资",
        "组合",
        "共同",
        "共事",
        "同事",
        "主演",
        "合编",
        "合译",
        "主编",
        "编著",
        "演唱",
        "亲戚",
        "表亲",
        "姻亲",
        "亲家",
        "连襟",
        "妯娌",
    }
)

# Before a listed pair (梁启超的弟子有胡适、徐志摩): what the two listed people are to each other.
SHARED_HEAD: dict[str, str] = {
    "弟子": "同门",
    "学生": "同门",
    "门生": "同门",
    "门徒": "同门",
    "徒弟": "同门",
    "高足": "同门",
    "传人": "同门",
    "儿子": "兄弟姐妹",
    "女儿": "兄弟姐妹",
    "子女": "兄弟姐妹",
    "儿女": "兄弟姐妹",
    "孩子": "兄弟姐妹",
    "作者": "合作",
    "主演": "合作",
    "合著": "合作",
    "编著": "合作",
    "主编": "合作",
    "演唱": "合作",
    "组合": "合作",
}

_LABEL_OF: dict[str, str] = {word: label for label, words in CUES.items() for word in words}
_LABEL_OF.update({w: label for w, label in (("孩子", "父母"),)})
# Longest first: at each position the longest word wins (未婚妻 over 妻, 弟子 over 弟).
_WORD = re.compile("|".join(re.escape(w) for w in sorted(_LABEL_OF, key=len, reverse=True)))

# What may stand between a relation word and a name without changing whose word it is:
# particles, copulas, conjunctions, pronouns, punctuation and the modifiers of kin words.
_FILLER = re.compile(
    r"[的之是为乃系与和及同跟其他她们也即便就又均都还了从向对给被让把将替带携随"
    r"，,、：:；\s—\-–·“”\"'‘’「」『』（）()"
    r"大小二三四五六长次幼亲爱前现原已故亡老新年轻]*"
)
_CONJUNCTION = re.compile(r"[与和及同跟、，,\s]+|以及|还有|或")
_COPULA = re.compile(r"[，,\s]*(?:是|为|乃|系|即|就是|也是|便是)[，,\s]*")
_CLAUSE_END = re.compile(r"[，,。；;！!？?\n]")
_HEAD_WINDOW = 12  # characters before a listed pair searched for its shared head word
_TAIL_WINDOW = 16  # characters after the second name searched for the relation word
_DESCRIPTOR_CHARS = 12  # longest description of a person between a relation word and the name
_SUBJECT_LEAD = 2  # characters that may stand before a sentence's leading subject


Place = Literal["between", "after", "before", "names"]


@dataclass(frozen=True)
class Cue:
    """The word that decided, where it stood, and the label it gives."""

    label: str
    word: str
    place: Place


def _filler(text: str, *, clause: bool = False) -> bool:
    """Only filler; with ``clause``, also within one clause (no comma: ``张三的表弟，也是王五``
    makes 表弟 张三's word, not 王五's)."""
    return _FILLER.fullmatch(text) is not None and not (clause and _CLAUSE_END.search(text))


def _words(text: str) -> list[re.Match[str]]:
    return list(_WORD.finditer(text))


def _closest(text: str, a: str, b: str) -> tuple[int, int, int, int] | None:
    """Spans (start, end) of ``a`` and ``b`` whose occurrences lie closest together without
    overlapping, as (first_start, first_end, second_start, second_end) in text order."""
    spans_a = [(m.start(), m.start() + len(a)) for m in re.finditer(re.escape(a), text)]
    spans_b = [(m.start(), m.start() + len(b)) for m in re.finditer(re.escape(b), text)]
    best = None
    for sa in spans_a:
        for sb in spans_b:
            first, second = sorted((sa, sb))
            if first[1] > second[0]:
                continue  # overlapping (one name inside the other, at the same place)
            gap = second[0] - first[1]
            if best is None or gap < best[0]:
                best = (gap, first[0], first[1], second[0], second[1])
    return None if best is None else best[1:]


def _descriptor(text: str, *, list_at: Literal["start", "end"]) -> bool:
    """Words that describe a person on one side of a relation word (著名演员, 外籍, 曾于1998年与):
    short, in the same clause, holding no relation word, and not a list of people: a
    conjunction next to the name's side (``妻子李梅和`` before the second name) means the
    word belongs to someone else."""
    if len(text) > _DESCRIPTOR_CHARS or _CLAUSE_END.search(text) or _words(text):
        return False
    core = text.strip("的之是为了 ")
    if not core:
        return True
    edge = core[0] if list_at == "start" else core[-1]
    return edge not in "与和及同跟、"


def _between(segment: str, subject_first: bool) -> Cue | None:
    """A relation word in the segment between the names, tied to both: through filler on
    one side and filler or a short description on the other (``师从著名画家李四``), or, when
    the first name leads the sentence, at the head of a later clause of it (``于佑福，女，
    天津人，师承高德明``: Chinese drops the repeated subject)."""
    for m in _words(segment):
        left, right = segment[: m.start()], segment[m.end() :]
        right_tight = _filler(right, clause=True)
        right_loose = right_tight or _descriptor(right, list_at="end")
        chain = subject_first and _topic_chain(left)
        if (_filler(left) or chain) and right_loose or right_tight and _descriptor(left, list_at="start"):
            return Cue(_LABEL_OF[m.group()], m.group(), "between")
    words = _words(segment)
    if words and all(_LABEL_OF[m.group()] == "同一个人" for m in words) and not re.search(r"[。；;！!？?\n]", segment):
        # a chain of names for one person: 严复，原名宗光，字又陵
        return Cue("同一个人", words[-1].group(), "between")
    return None


def _topic_chain(left: str) -> bool:
    """``，…，`` clauses of one sentence about its subject, the relation word opening the last."""
    if re.search(r"[。；;！!？?\n]", left) or _words(left):
        return False
    clauses = _CLAUSE_END.split(left)
    return len(clauses) > 1 and _filler(clauses[-1])


def _after(segment: str, tail: str) -> Cue | None:
    """A relation word right after the second name: any word after a copula, a shared one
    after a conjunction (张三和李梅结婚; 李梅是张三的妻子)."""
    copula = _COPULA.fullmatch(segment) is not None
    conjunction = _CONJUNCTION.fullmatch(segment) is not None
    if not (copula or conjunction):
        return None
    clause = _CLAUSE_END.split(tail[:_TAIL_WINDOW], maxsplit=1)[0]
    for m in _words(clause):
        word = m.group()
        lead = clause[: m.start()]
        if copula and _filler(lead):
            return Cue(_LABEL_OF[word], word, "after")
        if conjunction and word in MUTUAL and len(lead) <= 6 and not _words(lead):
            # 张三与李梅于1990年结婚: a short adverbial may come before the shared word
            return Cue(_LABEL_OF[word], word, "after")
    return None


def _listed(segment: str) -> bool:
    """The names stand in one list: separated by conjunctions, perhaps with other names
    between them (胡适，徐志摩和王庚)."""
    if _CONJUNCTION.fullmatch(segment):
        return True
    return (
        0 < len(segment) <= _DESCRIPTOR_CHARS
        and not re.search(r"[。；;！!？?\n]", segment)
        and not _words(segment)
        and segment[0] in "与和及同跟、，,"
        and segment[-1] in "与和及同跟、，,"
    )


def _before(segment: str, head: str) -> Cue | None:
    """A listed pair after a word they share (梁启超的弟子有胡适、徐志摩; 作者是鲁虹，孙振华)."""
    if not _listed(segment):
        return None
    window = _CLAUSE_END.split(head[-_HEAD_WINDOW:][::-1], maxsplit=1)[0][::-1]
    found = [m for m in _words(window) if m.group() in SHARED_HEAD]
    if not found:
        return None
    last = found[-1]
    rest = window[last.end() :]
    if len(rest) <= 4 and not _words(rest):  # 弟子中有, 作者是, 主演：
        return Cue(SHARED_HEAD[last.group()], last.group(), "before")
    return None


def explain_pair(text: str, people1: str, people2: str) -> Cue | None:
    """The cue that relates ``people1`` and ``people2`` in ``text``, or None (不知道)."""
    if people1 and people2 and people1 != people2 and (people1 in people2 or people2 in people1):
        # one name inside the other (伊丽莎白·泰勒 and 泰勒): the same person named twice
        return Cue("同一个人", "", "names")
    spans = _closest(text, people1, people2)
    if spans is None:
        return None
    first_start, first_end, second_start, second_end = spans
    segment = text[first_end:second_start]
    sentence_start = max(text.rfind(c, 0, first_start) for c in "。；;！!？?\n") + 1
    subject_first = first_start - sentence_start <= _SUBJECT_LEAD
    return (
        _between(segment, subject_first) or _after(segment, text[second_end:]) or _before(segment, text[:first_start])
    )


def label_pair(text: str, people1: str, people2: str) -> str:
    """One of the relation task's 14 labels for the pair, from the keyword rules alone."""
    cue = explain_pair(text, people1, people2)
    return UNKNOWN if cue is None else cue.label
