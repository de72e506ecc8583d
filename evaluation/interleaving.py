"""Team-draft interleaving (Radlinski, Kurup and Joachims, CIKM 2008) and its verdict from clicks.

    teams = team_draft(model_order, bm25_order, ("model", "bm25"), random.Random(seed))
    verdict = compare(outcomes_of(events), ("model", "bm25"), seed=0)

Team draft: the two rankers take turns like captains picking players; the one with fewer picks so
far picks next (a coin decides when they have as many), and each picks its best item not yet in the
list. Each shown item belongs to the team that picked it; a click credits that team.

An impression's outcome: the arm with more clicks wins, equal non-zero clicks is a tie, no click
says nothing (left out). The verdict over impressions:

- wins, losses and ties of arm A against arm B;
- the preference Delta = (wins - losses) / (wins + losses + ties) (Chapelle et al., TOIS 2012),
  with a 95% bootstrap interval resampling sessions (a user's impressions move together; seeded);
- a two-sided binomial sign test of wins against losses (ties left out): p under "no preference".
"""

from __future__ import annotations

import math
import random
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["ARMS", "MODEL_ARMS", "Outcome", "Verdict", "arms_of", "compare", "outcomes_of", "sign_test", "team_draft"]


ARMS = ("model", "bm25")  # the page's arms: the served model against BM25
MODEL_ARMS = ("model", "challenger")  # the served model against a second model version (web.interleave_target)


def arms_of(challenger: bool) -> tuple[str, str]:
    """The page's interleaving arms: against a challenger model when one is set, else against BM25."""
    return MODEL_ARMS if challenger else ARMS


def team_draft(a: Sequence[str], b: Sequence[str], arms: tuple[str, str], rng: random.Random,
               length: int | None = None) -> list[tuple[str, str]]:
    """(item, arm) in the interleaved order, `length` items (default: every item of either list)."""
    everything = set(a) | set(b)
    length = len(everything) if length is None else min(length, len(everything))
    shown: list[tuple[str, str]] = []
    taken: set[str] = set()
    picks = [0, 0]
    cursor = [0, 0]
    lists = (a, b)
    while len(shown) < length:
        if picks[0] != picks[1]:
            side = 0 if picks[0] < picks[1] else 1
        else:
            side = 0 if rng.random() < 0.5 else 1
        order = lists[side]
        while cursor[side] < len(order) and order[cursor[side]] in taken:
            cursor[side] += 1
        if cursor[side] == len(order):  # this ranker has nothing left: the other picks
            side = 1 - side
            order = lists[side]
            while cursor[side] < len(order) and order[cursor[side]] in taken:
                cursor[side] += 1
            if cursor[side] == len(order):
                break
        item = order[cursor[side]]
        shown.append((item, arms[side]))
        taken.add(item)
        picks[side] += 1
    return shown


@dataclass(frozen=True)
class Outcome:
    """One interleaved impression's clicks per arm."""

    session_id: str
    clicks_a: int
    clicks_b: int

    @property
    def sign(self) -> int:  # 1: A won, -1: B won, 0: tie
        return (self.clicks_a > self.clicks_b) - (self.clicks_a < self.clicks_b)


def outcomes_of(events: Iterable[dict], arms: tuple[str, str]) -> list[Outcome]:
    """The interleaved impressions with at least one click credited to either arm, from stored events
    (es_config/events.py). A click is credited to the arm its impression gave the product; a product
    clicked twice in one impression counts once."""
    impressions: dict[str, dict] = {}
    clicked: dict[str, set[str]] = defaultdict(set)
    for e in events:
        if e["type"] == "impression" and e.get("interleaved"):
            impressions[e["event_id"]] = e
        elif e["type"] == "click":
            clicked[e["impression_id"]].add(e["product_id"])
    out = []
    for impression_id, impression in sorted(impressions.items()):
        arm_of = {s["product_id"]: s["arm"] for s in impression["items"]}
        credited = [arm_of[pid] for pid in clicked.get(impression_id, ()) if pid in arm_of]
        a, b = credited.count(arms[0]), credited.count(arms[1])
        if a or b:
            out.append(Outcome(impression["session_id"], a, b))
    return out


def sign_test(wins: int, losses: int) -> float:
    """Two-sided exact binomial test of wins against losses under p = 1/2 (twice the smaller tail)."""
    n, k = wins + losses, min(wins, losses)
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, i) for i in range(k + 1)) / 2 ** n
    return min(1.0, 2 * tail)


@dataclass(frozen=True)
class Verdict:
    arms: tuple[str, str]
    wins: int  # impressions arm A won
    losses: int  # impressions arm B won
    ties: int
    sessions: int
    preference: float  # Delta_AB in [-1, 1]; > 0: A preferred
    low: float  # 95% bootstrap interval of the preference, over sessions
    high: float
    p_value: float  # two-sided sign test, wins against losses

    @property
    def impressions(self) -> int:
        return self.wins + self.losses + self.ties


def compare(outcomes: Sequence[Outcome], arms: tuple[str, str], seed: int = 0, resamples: int = 2000) -> Verdict:
    """The verdict over interleaved impressions with clicks (see the module's docstring)."""
    signs = np.array([o.sign for o in outcomes], dtype=np.int64)
    wins, losses = int((signs > 0).sum()), int((signs < 0).sum())
    ties = len(signs) - wins - losses
    if not len(signs):
        return Verdict(arms, 0, 0, 0, 0, 0.0, float("nan"), float("nan"), 1.0)
    preference = (wins - losses) / len(signs)
    by_session: dict[str, list[int]] = defaultdict(list)
    for o in outcomes:
        by_session[o.session_id].append(o.sign)
    sums = np.array([sum(v) for v in by_session.values()], dtype=np.float64)
    counts = np.array([len(v) for v in by_session.values()], dtype=np.float64)
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, len(sums), size=(resamples, len(sums)))
    deltas = sums[draws].sum(axis=1) / counts[draws].sum(axis=1)
    low, high = np.percentile(deltas, [2.5, 97.5])
    p_value = sign_test(wins, losses)
    return Verdict(arms, wins, losses, ties, len(by_session), float(preference), float(low), float(high),
                   float(p_value))
