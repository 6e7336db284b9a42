"""Name-swap augmentation: the same sentence with other names in it.

A task's mention fields (``occurs_in`` in its task file: the two people of the relation task)
name something inside another field. Replacing every mention (each occurrence) with names
drawn from the rest of the data makes a small model learn the context of a relation rather
than memorise who is related to whom. A task without mention fields is never swapped.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence

from people_relation.dataset import Example


def _apart(names: Sequence[str]) -> bool:
    """Distinct, and none inside another."""
    return all(a != b and a not in b for i, a in enumerate(names) for j, b in enumerate(names) if i != j)


def mention_names(examples: Sequence[Example], mentions: Mapping[str, str]) -> list[str]:
    """Every name the mention fields hold in ``examples``, sorted."""
    return sorted({e[field] for e in examples for field in mentions})


def swappable(example: Example, mentions: Mapping[str, str]) -> bool:
    """A row can be swapped when it has mentions, all distinct and none containing another."""
    return bool(mentions) and _apart([example[f] for f in mentions])


def swap_names(example: Example, mentions: Mapping[str, str], names: Sequence[str], rng: random.Random) -> Example:
    """``example`` with every mention renamed to other distinct names from ``names``
    (``mentions``: mention field -> the field it occurs in)."""
    if not swappable(example, mentions):
        return example
    fields = list(mentions)
    old = [example[f] for f in fields]
    for _ in range(20):
        new = rng.sample(list(names), len(fields)) if len(names) > len(fields) - 1 else old
        if _apart(new) and set(new).isdisjoint(old):
            break
    else:
        return example
    changes = {f: n for f, n in zip(fields, new, strict=True)}
    for holder in dict.fromkeys(mentions.values()):
        text = example[holder]
        mine = [i for i, f in enumerate(fields) if mentions[f] == holder]
        for i in mine:
            text = text.replace(old[i], chr(i))
        if any(new[i] in text for i in mine):
            return example
        for i in mine:
            text = text.replace(chr(i), new[i])
        changes[holder] = text
    return example.with_inputs(**changes)
