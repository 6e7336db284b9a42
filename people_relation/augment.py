"""Name-swap augmentation: the same sentence with other people in it.

Replacing both names (every occurrence) with names drawn from the rest of the data makes
a small model learn the context of a relation rather than memorise who is related to whom.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from people_relation.dataset import Example


def swappable(example: Example) -> bool:
    """A row can be swapped when its two names are distinct and neither contains the other."""
    p1, p2 = example.people1, example.people2
    return p1 != p2 and p1 not in p2 and p2 not in p1


def swap_names(example: Example, names: Sequence[str], rng: random.Random) -> Example:
    """``example`` with both people renamed to two other distinct names from ``names``."""
    if not swappable(example):
        return example
    for _ in range(20):
        new1, new2 = rng.sample(list(names), 2) if len(names) > 1 else (example.people1, example.people2)
        if (
            new1 != new2
            and new1 not in new2
            and new2 not in new1
            and {new1, new2}.isdisjoint({example.people1, example.people2})
        ):
            break
    else:
        return example
    placeholder1, placeholder2 = "\x00", "\x01"
    text = example.text.replace(example.people1, placeholder1).replace(example.people2, placeholder2)
    if new1 in text or new2 in text:
        return example
    text = text.replace(placeholder1, new1).replace(placeholder2, new2)
    return Example(
        id=example.id,
        split=example.split,
        line=example.line,
        text=text,
        people1=new1,
        people2=new2,
        label=example.label,
    )
