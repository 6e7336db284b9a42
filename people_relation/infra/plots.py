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


def moving_average(values: list[float], window: int) -> list[float]:
    """Trailing mean over up to ``window`` points (fewer at the start)."""
    out, total = [], 0.0
    for i, v in enumerate(values):
        total += v
        if i >= window:
            total -= values[i - window]
        out.append(total / min(i + 1, window))
    return out


def line_chart(
    rows: list[dict[str, float]],
    x: str,
    ys: Mapping[str, str],
    title: str,
    path: Path,
    dpi: int,
    smooth: int = 1,
    passes_per_step: float | None = None,
    ylabel: str | None = None,
    log_y: bool = False,
) -> None:
    """One line per column in ``ys`` (column -> legend label) against column ``x``. With
    ``smooth`` > 1 the raw points are drawn faint and their moving average over ``smooth``
    points solid, as training curves are read. With ``passes_per_step`` (prompts a step /
    training rows) a second axis on top counts the passes over the training rows. ``log_y``:
    a logarithmic y axis (a perplexity falling from thousands)."""
    use_cjk_font()
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for column, label in ys.items():
        points = [(r[x], r[column]) for r in rows if x in r and column in r]
        if not points:
            continue
        xs, values = [p[0] for p in points], [p[1] for p in points]
        if smooth > 1:
            (raw,) = ax.plot(xs, values, linewidth=0.8, alpha=0.25)
            ax.plot(
                xs,
                moving_average(values, smooth),
                color=raw.get_color(),
                linewidth=1.6,
                label=f"{label} (mean of {smooth})",
            )
        else:
            ax.plot(xs, values, label=label, linewidth=1.2, marker="o" if len(points) < 30 else None, markersize=3)
    ax.set_xlabel(x)
    if ylabel:
        ax.set_ylabel(ylabel)
    if log_y:
        ax.set_yscale("log")
    if passes_per_step:
        top = ax.secondary_xaxis("top", functions=(lambda s: s * passes_per_step, lambda p: p / passes_per_step))
        top.set_xlabel("passes over the training rows")
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


SOURCE_COLORS = {"this project": "#d62728", "measured here": "#ff7f0e", "published": "#1f77b4"}


def comparison_bars(rows: list[tuple[str, float, str]], title: str, xlabel: str, path: Path, dpi: int) -> None:
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
    ax.set_xlabel(xlabel)
    ax.set_title(title)
    handles = [plt.Rectangle((0, 0), 1, 1, color=c) for c in SOURCE_COLORS.values()]
    ax.legend(handles, list(SOURCE_COLORS), loc="lower right", fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    plt.close(fig)


def arm_curves(
    arms: Mapping[str, tuple[list[dict[str, float]], list[dict[str, float]]]],
    reward_key: str,
    validation_key: str,
    smooth: int,
    title: str,
    path: Path,
    dpi: int,
) -> None:
    """Each arm's GRPO curves side by side: the label reward per step (moving average over
    ``smooth`` steps, raw points faint) and the greedy validation score per evaluation.
    ``arms`` maps an arm to its (reward history, validation history) rows."""
    use_cjk_font()
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    for arm, (rewards, validation) in arms.items():
        points = [(r["step"], r[reward_key]) for r in rewards if reward_key in r]
        if points:
            (raw,) = left.plot([p[0] for p in points], [p[1] for p in points], linewidth=0.6, alpha=0.2)
            left.plot(
                [p[0] for p in points],
                moving_average([p[1] for p in points], smooth),
                color=raw.get_color(),
                linewidth=1.6,
                label=arm,
            )
            color = raw.get_color()
        else:
            color = None
        evals = [(r["step"], r[validation_key]) for r in validation if validation_key in r]
        if evals:
            right.plot([p[0] for p in evals], [p[1] for p in evals], marker="o", markersize=3, color=color, label=arm)
    left.set_title(f"label reward during GRPO (mean of {smooth} steps)")
    right.set_title("greedy weighted F1 on validation during GRPO")
    for ax in (left, right):
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
