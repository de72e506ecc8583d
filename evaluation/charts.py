"""The report's charts, drawn by matplotlib and returned as inline SVG text (no files, no network).

Figures are built with `matplotlib.figure.Figure` (no pyplot state, so a web handler may draw while
another thread does); SVG ids are salted with a fixed string, so the same data gives the same SVG.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import matplotlib
import numpy as np
from matplotlib.figure import Figure

NDCG_AXIS = "NDCG@10 (linear gain, unjudged = 0)"
MRR_AXIS = "MRR@10 (relevant = gain >= 1, unjudged = 0)"
SETTING_NAMES = {"end_to_end": "end to end (BM25 top-100, whole catalog)",
                 "rerank_judged": "rerank-judged (judged products only)"}
COLORS = {"end_to_end": "#2b6cb0", "rerank_judged": "#dd6b20"}
_RC = {"svg.fonttype": "none", "svg.hashsalt": "shopsearch-report", "font.size": 9,
       "axes.spines.top": False, "axes.spines.right": False}


@dataclass(frozen=True)
class Interval:
    mean: float
    low: float
    high: float


def to_svg(fig: Figure) -> str:
    """The figure as an `<svg>` element (the XML prolog and doctype dropped, for inlining)."""
    buffer = io.StringIO()
    with matplotlib.rc_context(_RC):
        fig.savefig(buffer, format="svg", bbox_inches="tight")
    text = buffer.getvalue()
    return text[text.index("<svg"):]


def _figure(width: float, height: float) -> Figure:
    with matplotlib.rc_context(_RC):
        return Figure(figsize=(width, height), layout="constrained")


def quality_chart(figures: Mapping[str, Mapping[str, Mapping[str, Interval]]]) -> str:
    """Two panels (NDCG@10, MRR@10): one bar per ranker and setting, 95% bootstrap interval as whiskers.
    `figures`: setting -> ranker -> metric label -> Interval."""
    with matplotlib.rc_context(_RC):
        rankers = list(next(iter(figures.values())))
        fig = _figure(10, 0.55 * len(rankers) + 1.6)
        axes = fig.subplots(1, 2, sharey=True)
        y = np.arange(len(rankers))
        height = 0.8 / len(figures)
        for ax, (metric, label) in zip(axes, (("ndcg@10", NDCG_AXIS), ("mrr@10", MRR_AXIS))):
            for i, (setting, rows) in enumerate(figures.items()):
                values = [rows[r][metric] for r in rankers]
                means = np.array([v.mean for v in values])
                errors = np.array([[v.mean - v.low for v in values], [v.high - v.mean for v in values]])
                ax.barh(y + (i - (len(figures) - 1) / 2) * height, means, height, xerr=errors,
                        color=COLORS.get(setting), label=SETTING_NAMES.get(setting, setting), capsize=2,
                        error_kw={"elinewidth": 0.8, "ecolor": "#333"})
            ax.set_xlabel(label)
            ax.set_xlim(0, 1)
            ax.grid(axis="x", alpha=0.3)
        axes[0].set_yticks(y, rankers)
        axes[0].invert_yaxis()
        axes[1].legend(loc="lower right", fontsize=8)
        return to_svg(fig)


def difference_chart(deltas: Mapping[str, Sequence[float]], counts: Mapping[str, tuple[int, int, int]],
                     baseline: str, seed: int = 0) -> str:
    """Per ranker, the distribution of its per-query NDCG@10 change against `baseline`: a box plot,
    every query as a dot, and the win / tie / loss counts beside it."""
    with matplotlib.rc_context(_RC):
        rankers = list(deltas)
        fig = _figure(10, 0.6 * len(rankers) + 1.4)
        ax = fig.subplots()
        rng = np.random.default_rng(seed)
        for i, name in enumerate(rankers):
            values = np.asarray(deltas[name], dtype=float)
            ax.scatter(values, i + rng.uniform(-0.18, 0.18, values.size), s=6, alpha=0.35,
                       c=np.where(values > 0, "#2f855a", np.where(values < 0, "#c53030", "#718096")), linewidths=0)
            wins, ties, losses = counts[name]
            ax.annotate(f"{wins} wins / {ties} ties / {losses} losses", (1.01, i), xycoords=("axes fraction", "data"),
                        va="center", fontsize=8)
        ax.boxplot([np.asarray(deltas[r], dtype=float) for r in rankers], positions=range(len(rankers)),
                   orientation="horizontal", widths=0.5, showfliers=False, showmeans=True,
                   medianprops={"color": "#000"}, meanprops={"marker": "D", "markersize": 4,
                                                              "markerfacecolor": "#000", "markeredgecolor": "#000"})
        ax.axvline(0, color="#444", linewidth=0.8)
        ax.set_yticks(range(len(rankers)), rankers)
        ax.invert_yaxis()
        ax.set_xlim(-1, 1)
        ax.set_xlabel(f"per-query change of end-to-end {NDCG_AXIS} against {baseline}")
        ax.grid(axis="x", alpha=0.3)
        return to_svg(fig)


def cost_chart(points: Mapping[str, tuple[float, float, float]], baseline: str) -> str:
    """Quality against cost: NDCG@10 against ms per 100 candidates (log axis), one point per model for
    a query seen for the first time (filled) and a repeated one (open). `points`: name -> (ndcg, first, repeat)."""
    with matplotlib.rc_context(_RC):
        fig = _figure(10, 4.6)
        ax = fig.subplots()
        colors = matplotlib.colormaps["tab10"]
        for i, (name, (ndcg, first, repeat)) in enumerate(points.items()):
            color = colors(i % 10)
            first, repeat = max(first, 1e-4), max(repeat, 1e-4)  # a log axis needs positive times
            ax.plot([first, repeat], [ndcg, ndcg], color=color, linewidth=0.8, alpha=0.6)
            ax.scatter([first], [ndcg], color=color, s=40, label=name, zorder=3)
            ax.scatter([repeat], [ndcg], facecolors="white", edgecolors=color, s=40, zorder=3)
            ax.annotate(name, (first, ndcg), textcoords="offset points", xytext=(6, 5), fontsize=8)
        ax.set_xscale("log")
        ax.set_xlabel("scoring time, ms per 100 candidates (log scale; filled: first-seen query, open: repeated query)")
        ax.set_ylabel(f"end-to-end {NDCG_AXIS}")
        ax.grid(alpha=0.3, which="both")
        if baseline in points:
            ax.axhline(points[baseline][0], color="#888", linestyle="--", linewidth=0.8)
        ax.legend(loc="best", fontsize=7)
        return to_svg(fig)


def stage_chart(seconds: Mapping[str, float]) -> str:
    """Wall time of each pipeline stage, in run order."""
    with matplotlib.rc_context(_RC):
        names = list(seconds)
        fig = _figure(10, 0.32 * len(names) + 1.2)
        ax = fig.subplots()
        values = [seconds[n] for n in names]
        ax.barh(range(len(names)), values, color="#4a5568")
        for i, v in enumerate(values):
            ax.annotate(f"{v:,.1f} s", (v, i), textcoords="offset points", xytext=(4, 0), va="center", fontsize=8)
        ax.set_yticks(range(len(names)), names)
        ax.invert_yaxis()
        ax.set_xlabel("stage wall time, seconds (stages.json)")
        ax.grid(axis="x", alpha=0.3)
        return to_svg(fig)


def interleaving_chart(arms: tuple[str, str], wins: int, ties: int, losses: int, preference: float,
                       low: float, high: float) -> str:
    """An interleaving's verdict: the impressions each arm won (and the ties) as one stacked bar, and
    the preference for the first arm with its 95% interval on a -1..1 axis."""
    with matplotlib.rc_context(_RC):
        fig = _figure(8, 2.2)
        counts, pref = fig.subplots(2, 1, height_ratios=(1, 1))
        left = 0
        for label, n, color in ((f"{arms[0]} wins", wins, "#2f855a"), ("ties", ties, "#a0aec0"),
                                (f"{arms[1]} wins", losses, "#c53030")):
            counts.barh(0, n, left=left, color=color, label=f"{label}: {n}")
            left += n
        counts.set_yticks([])
        counts.set_xlabel("interleaved impressions with a click")
        counts.legend(loc="upper center", bbox_to_anchor=(0.5, -0.9), ncol=3, frameon=False)
        if not np.isnan(low):
            pref.errorbar([preference], [0], xerr=[[preference - low], [high - preference]], fmt="D", color="#000",
                          capsize=4)
        pref.axvline(0, color="#444", linewidth=0.8)
        pref.set_xlim(-1, 1)
        pref.set_yticks([])
        pref.set_xlabel(f"preference for {arms[0]} over {arms[1]} (wins - losses) / impressions, 95% interval")
        return to_svg(fig)
