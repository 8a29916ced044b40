"""Plots as inline images (matplotlib, Agg backend): each function returns a ``data:`` URI."""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

ACCENT = "#3b6ea8"
REJECT = "#c0504d"
plt.rcParams.update(
    {
        "font.size": 8,
        "axes.titlesize": 9,
        "axes.spines.top": False,
        "axes.spines.right": False,
        "figure.dpi": 100,
        "text.parse_math": False,  # labels are file names and values: "$5_off_$10" is text
    }
)


def _uri(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight")
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def histogram(h: dict[str, Any], title: str, xlabel: str = "") -> str | None:
    """A histogram from fixed ``edges`` and ``counts`` (None when empty)."""
    edges, counts = h.get("edges") or [], h.get("counts") or []
    if not counts or not sum(counts):
        return None
    fig, ax = plt.subplots(figsize=(3.6, 2.2))
    widths = [b - a for a, b in zip(edges, edges[1:], strict=False)]
    ax.bar(
        edges[:-1],
        counts,
        width=widths,
        align="edge",
        color=ACCENT,
        edgecolor="white",
        linewidth=0.4,
    )
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("rows")
    return _uri(fig)


def bars(
    labels: Sequence[str],
    values: Sequence[float],
    title: str,
    color: str = ACCENT,
    xlabel: str = "count",
) -> str | None:
    """Horizontal bars, first label on top (None when empty)."""
    if not labels:
        return None
    labels = [str(x)[:40] for x in labels]
    fig, ax = plt.subplots(figsize=(4.8, 0.3 * len(labels) + 0.8))
    y = list(range(len(labels)))[::-1]
    ax.barh(y, values, color=color)
    ax.set_yticks(y, labels)
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    for yi, v in zip(y, values, strict=True):
        ax.text(
            v, yi, f" {v:,.0f}" if float(v).is_integer() else f" {v:.3g}", va="center", fontsize=7
        )
    return _uri(fig)


def funnel(steps: Sequence[dict[str, Any]]) -> str | None:
    """The funnel: one bar per step, losses to the next step in red."""
    rows = [s for s in steps if s.get("count") is not None]
    if not rows:
        return None
    fig, ax = plt.subplots(figsize=(6.4, 0.45 * len(rows) + 0.8))
    y = list(range(len(rows)))[::-1]
    counts = [s["count"] for s in rows]
    lost = [min(s.get("lost_total", 0), s["count"]) for s in rows]
    ax.barh(
        y,
        [c - x for c, x in zip(counts, lost, strict=True)],
        color=ACCENT,
        label="goes on to the next step",
    )
    ax.barh(
        y,
        lost,
        left=[c - x for c, x in zip(counts, lost, strict=True)],
        color=REJECT,
        label="dropped before the next step",
    )
    ax.set_yticks(y, [s["name"] for s in rows])
    for yi, s in zip(y, rows, strict=True):
        dropped = f"  (−{s['lost_total']:,})" if s.get("lost_total") else ""
        ax.text(s["count"], yi, f" {s['count']:,}{dropped}", va="center", fontsize=7)
    ax.legend(loc="lower right", frameon=False, fontsize=7)
    ax.set_title("funnel")
    return _uri(fig)


def intervals(
    rows: Sequence[dict[str, Any]], title: str, xlabel: str = "share of captions"
) -> str | None:
    """Point estimates with 95% intervals (rows: ``label``, ``rate``, ``ci95``)."""
    rows = [r for r in rows if r.get("rate") is not None]
    if not rows:
        return None
    fig, ax = plt.subplots(figsize=(4.8, 0.3 * len(rows) + 0.8))
    y = list(range(len(rows)))[::-1]
    rates = [r["rate"] for r in rows]
    lo = [r["rate"] - r["ci95"][0] for r in rows]
    hi = [r["ci95"][1] - r["rate"] for r in rows]
    ax.errorbar(rates, y, xerr=[lo, hi], fmt="o", color=ACCENT, ecolor="#888", capsize=2, ms=3)
    ax.set_yticks(y, [str(r["label"])[:40] for r in rows])
    ax.set_xlim(left=0)
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    return _uri(fig)


def heatmap(
    matrix: Sequence[Sequence[float]], rows: Sequence[str], cols: Sequence[str], title: str
) -> str | None:
    """A labelled heat map with the values written in the cells."""
    if not rows or not cols:
        return None
    fig, ax = plt.subplots(figsize=(0.45 * len(cols) + 1.8, 0.3 * len(rows) + 1.4))
    im = ax.imshow(matrix, cmap="Blues", aspect="auto")
    ax.set_xticks(range(len(cols)), [c[:18] for c in cols], rotation=60, ha="right")
    ax.set_yticks(range(len(rows)), [r[:24] for r in rows])
    peak = max((max(r) for r in matrix if r), default=0) or 1
    for i, r in enumerate(matrix):
        for j, v in enumerate(r):
            if v:
                ax.text(j, i, f"{v:.0%}" if v <= 1 else f"{v:.0f}", ha="center", va="center",
                        fontsize=6, color="white" if v > peak / 2 else "black")  # fmt: skip
    ax.set_title(title)
    fig.colorbar(im, ax=ax, fraction=0.03)
    return _uri(fig)
