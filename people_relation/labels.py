"""The 14 relation labels, in the order the published prompt lists them."""

from __future__ import annotations

LABELS: tuple[str, ...] = (
    "不知道",
    "夫妻",
    "父母",
    "兄弟姐妹",
    "上下级",
    "师生",
    "好友",
    "同学",
    "合作",
    "同一个人",
    "情侣",
    "祖孙",
    "同门",
    "亲戚",
)

_LABEL_SET = frozenset(LABELS)


def is_label(value: str) -> bool:
    """True when ``value`` is exactly one of the 14 labels (no normalisation)."""
    return value in _LABEL_SET


def label_index(value: str) -> int:
    """Position of ``value`` in :data:`LABELS`; raises ``ValueError`` naming the labels."""
    try:
        return LABELS.index(value)
    except ValueError:
        raise ValueError(f"unknown label {value!r}; expected one of {', '.join(LABELS)}") from None
