"""The applications' own sections of ``params.yaml``, checked when an application starts.

The pipeline's schema (:mod:`people_relation.settings`) passes these sections through
untouched, so a new key here, or a new value of one in ``params.yaml``, leaves every DVC
stage as it was. The messages are the pipeline's: the file, the dotted key, what is allowed.
"""

from __future__ import annotations

from typing import Literal

from people_relation.settings import Count, Port, PositiveInt, Section, Settings, parse_section


class DemoSettings(Section):
    """The demo page (``make demo``, ``apps/demo.py``): where it listens, which examples it offers."""

    host: str
    """Address the page binds; ``0.0.0.0`` shows it to the network."""
    port: Port
    """Port of the page: checked free first; 0 picks a free one."""
    examples: Count
    """Rows of ``examples_split`` offered as clickable examples, one per label first (0: none)."""
    examples_split: Literal["validation", "test"]
    """The split the examples come from (``split.out_dir/<split>.jsonl``)."""
    preview_chars: PositiveInt
    """Characters of an example's sentence shown on its button."""


def demo_settings(settings: Settings, source: str = "params.yaml") -> DemoSettings:
    """The ``demo`` section checked (a ParamsError naming the key when it is wrong)."""
    return parse_section(DemoSettings, settings.demo, "demo", source)
