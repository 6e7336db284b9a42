"""Charts with Chinese labels rendered in a CJK font (matplotlib ships none)."""

from __future__ import annotations

from collections.abc import Mapping
from functools import cache
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
from matplotlib import font_manager  # noqa: E402

CJK_FAMILIES = ("Noto Sans CJK SC", "Noto Sans CJK JP", "Noto Serif CJK SC", "WenQuanYi Zen Hei", "SimHei")


class FontError(RuntimeError):
    pass


@cache
def cjk_font_family() -> str:
    """The first installed CJK family, or a FontError saying how to install one."""
    available = {f.name for f in font_manager.fontManager.ttflist}
    for family in CJK_FAMILIES:
        if family in available:
            return family
    raise FontError(
        "no CJK font found, Chinese labels would render as boxes. Install one: "
        "`apt-get install fonts-noto-cjk` (the setup script does this), then remove "
        "matplotlib's font cache (~/.cache/matplotlib) and run again."
    )


def use_cjk_font() -> None:
    plt.rcParams["font.family"] = "sans-serif"
    plt.rcParams["font.sans-serif"] = [cjk_font_family(), "DejaVu Sans"]
    plt.rcParams["axes.unicode_minus"] = False


def grouped_barh(
    series: Mapping[str, Mapping[str, int]],
    title: str,
    xlabel: str,
    path: Path,
    dpi: int,
) -> None:
    """One horizontal bar group per category (in the mappings' order), one bar per series."""
    use_cjk_font()
    names = list(series)
    categories = list(next(iter(series.values())))
    height = 0.8 / max(1, len(names))
    fig, ax = plt.subplots(figsize=(8, 0.45 * len(categories) + 1.5))
    for i, name in enumerate(names):
        values = [series[name][c] for c in categories]
        ys = [y + i * height for y in range(len(categories))]
        bars = ax.barh(ys, values, height=height, label=f"{name} ({sum(values)})")
        ax.bar_label(bars, fontsize=7, padding=2)
    ax.set_yticks([y + height * (len(names) - 1) / 2 for y in range(len(categories))], categories)
    ax.invert_yaxis()
    ax.set_xlabel(xlabel)
    ax.set_title(title)
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    plt.close(fig)


def line_chart(
    rows: list[dict[str, float]],
    x: str,
    ys: Mapping[str, str],
    title: str,
    path: Path,
    dpi: int,
) -> None:
    """One line per column in ``ys`` (column -> legend label) against column ``x``."""
    use_cjk_font()
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for column, label in ys.items():
        points = [(r[x], r[column]) for r in rows if x in r and column in r]
        if points:
            ax.plot([p[0] for p in points], [p[1] for p in points], label=label, linewidth=1.2)
    ax.set_xlabel(x)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    plt.close(fig)


def confusion_heatmap(
    rows: list[str], columns: list[str], matrix: list[list[int]], title: str, path: Path, dpi: int
) -> None:
    """Counts of gold label (rows) against predicted label (columns), each cell annotated."""
    use_cjk_font()
    fig, ax = plt.subplots(figsize=(0.55 * len(columns) + 2.5, 0.5 * len(rows) + 2))
    image = ax.imshow(matrix, cmap="Blues")
    ax.set_xticks(range(len(columns)), columns, rotation=60, ha="right")
    ax.set_yticks(range(len(rows)), rows)
    peak = max((v for row in matrix for v in row), default=0)
    for i, row in enumerate(matrix):
        for j, value in enumerate(row):
            if value:
                color = "white" if value > peak / 2 else "black"
                ax.text(j, i, str(value), ha="center", va="center", fontsize=7, color=color)
    ax.set_xlabel("predicted")
    ax.set_ylabel("gold")
    ax.set_title(title)
    fig.colorbar(image, ax=ax, fraction=0.03)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    plt.close(fig)


SOURCE_COLORS = {"this run": "#d62728", "measured here": "#ff7f0e", "published": "#1f77b4"}


def comparison_bars(rows: list[tuple[str, float, str]], title: str, path: Path, dpi: int) -> None:
    """One bar per (label, weighted F1, source), best first, coloured by source."""
    use_cjk_font()
    fig, ax = plt.subplots(figsize=(9, 0.42 * len(rows) + 1.6))
    labels = [r[0] for r in rows]
    values = [r[1] * 100 for r in rows]
    bars = ax.barh(range(len(rows)), values, color=[SOURCE_COLORS.get(r[2], "grey") for r in rows])
    ax.bar_label(bars, labels=[f"{v:.2f}" for v in values], fontsize=8, padding=2)
    ax.set_yticks(range(len(rows)), labels, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(0, 100)
    ax.set_xlabel("weighted F1 (%) on the 776-row test set")
    ax.set_title(title)
    handles = [plt.Rectangle((0, 0), 1, 1, color=c) for c in SOURCE_COLORS.values()]
    ax.legend(handles, list(SOURCE_COLORS), loc="lower right", fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
