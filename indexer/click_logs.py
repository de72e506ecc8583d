"""From the page's behaviour events (es_config/events.py) to the generic format's `logs` table and to a
click graph corrected for position bias.

    counts = position_counts(events)                 # (query, product, position) -> shown, clicked
    rows, new_queries = logs_table(counts, query_ids)  # docs/catalog-format.md `logs` rows
    model = estimate_pbm(counts)                     # examination per position, from the logs alone
    graph = graph_from_position_counts(counts, query_ids, model.examination)

Position bias: a result further down is clicked less even when it is as good, because fewer people
look at it. The position-based model (PBM; Craswell et al. 2008, Chuklin et al. "Click Models for
Web Search" ch. 3) says P(click | q, d, k) = theta_k * gamma_qd: theta_k the chance position k is
examined, gamma_qd the chance the item attracts a click once seen. `estimate_pbm` fits both by EM on
the logged counts (theta_1 fixed to 1: only ratios are identified). The graph's edge weight is then
the smoothed click rate per *examined* impression, (clicks + 1) / (sum_k shown_k * theta_k + 2): each
impression is weighted by its examination chance (the inverse-propensity correction of the CTR's
denominator), with graph_from_logs' Beta(1, 1) prior.

Queries are matched to the catalog's query ids by text (case and spacing aside); a query text the
catalog does not have gets a stable id `log-<12 hex of its sha1>` and a row for the `queries` table.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np

from indexer.graph import ClickGraph

__all__ = ["PbmModel", "estimate_pbm", "graph_from_position_counts", "log_query_id", "logs_table",
           "position_counts", "query_key", "with_teacher_edges"]

Key = tuple[str, str, int]  # query key, product id, position


def query_key(text: str) -> str:
    return " ".join(text.lower().split())


def log_query_id(text: str) -> str:
    return "log-" + hashlib.sha1(query_key(text).encode()).hexdigest()[:12]


def position_counts(events: Iterable[dict]) -> dict[Key, list[int]]:
    """(query key, product, position) -> [times shown, times clicked], from stored events. A click
    counts when its impression is among the events and showed the product at that position; a product
    clicked twice within one impression counts once. Event ids are unique in the index, so a resent
    event is never counted twice."""
    impressions: dict[str, dict] = {}
    clicked: dict[str, set[str]] = defaultdict(set)
    for e in events:
        if e["type"] == "impression":
            impressions[e["event_id"]] = e
        elif e["type"] == "click":
            clicked[e["impression_id"]].add(e["product_id"])
    counts: dict[Key, list[int]] = defaultdict(lambda: [0, 0])
    for impression_id, impression in impressions.items():
        q = query_key(impression["query"])
        hits = clicked.get(impression_id, set())
        for shown in impression["items"]:
            cell = counts[(q, shown["product_id"], shown["position"])]
            cell[0] += 1
            cell[1] += shown["product_id"] in hits
    return dict(counts)


def logs_table(counts: Mapping[Key, list[int]], query_ids: Mapping[str, str]) -> tuple[list[dict], list[dict]]:
    """The generic format's `logs` rows (query_id, product_id, clicks, impressions; positions summed),
    and `queries` rows for query texts the catalog lacks. `query_ids`: query key -> catalog query id."""
    pairs: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])
    texts: dict[str, str] = {}
    for (q, product_id, _), (shown, clicks) in counts.items():
        qid = query_ids.get(q)
        if qid is None:
            qid = log_query_id(q)
            texts[qid] = q
        pairs[(qid, product_id)][0] += shown
        pairs[(qid, product_id)][1] += clicks
    rows = [{"query_id": qid, "product_id": pid, "clicks": c, "impressions": n}
            for (qid, pid), (n, c) in sorted(pairs.items())]
    new_queries = [{"query_id": qid, "query": text} for qid, text in sorted(texts.items())]
    return rows, new_queries


@dataclass(frozen=True)
class PbmModel:
    examination: dict[int, float]  # position -> theta (theta_1 = 1)
    attractiveness: dict[tuple[str, str], float]  # (query key, product) -> gamma
    iterations: int


def estimate_pbm(counts: Mapping[Key, list[int]], iterations: int = 50, tol: float = 1e-6) -> PbmModel:
    """The PBM's theta and gamma by EM on the counts (Chuklin et al., section 4.3).

    E step, per (q, d, k) cell with N shown and C clicked: clicks are examined and attractive; of the
    N - C unclicked, a share theta(1-gamma)/(1-theta*gamma) was examined, gamma(1-theta)/(1-theta*gamma)
    attractive. M step: theta_k and gamma_qd are the expected shares."""
    keys = list(counts)
    if not keys:
        return PbmModel({}, {}, 0)
    positions = sorted({k for _, _, k in keys})
    pairs = sorted({(q, d) for q, d, _ in keys})
    pos_index = {k: i for i, k in enumerate(positions)}
    pair_index = {p: i for i, p in enumerate(pairs)}
    k_of = np.array([pos_index[k] for _, _, k in keys])
    p_of = np.array([pair_index[(q, d)] for q, d, _ in keys])
    shown = np.array([counts[key][0] for key in keys], dtype=np.float64)
    clicks = np.array([counts[key][1] for key in keys], dtype=np.float64)
    theta = np.full(len(positions), 0.5)
    gamma = np.full(len(pairs), 0.5)
    done = 0
    for done in range(1, iterations + 1):
        t, g = theta[k_of], gamma[p_of]
        unclicked = shown - clicks
        denom = np.clip(1 - t * g, 1e-12, None)
        examined = clicks + unclicked * t * (1 - g) / denom
        attractive = clicks + unclicked * g * (1 - t) / denom
        new_theta = np.bincount(k_of, examined, len(positions)) / np.clip(np.bincount(k_of, shown, len(positions)), 1e-12, None)
        new_gamma = np.bincount(p_of, attractive, len(pairs)) / np.clip(np.bincount(p_of, shown, len(pairs)), 1e-12, None)
        new_theta, new_gamma = np.clip(new_theta, 1e-6, 1.0), np.clip(new_gamma, 1e-6, 1 - 1e-6)
        change = max(np.abs(new_theta - theta).max(), np.abs(new_gamma - gamma).max())
        theta, gamma = new_theta, new_gamma
        if change < tol:
            break
    theta = theta / theta[0]  # only ratios are identified: the top position is examined
    return PbmModel({k: float(min(1.0, theta[i])) for k, i in pos_index.items()},
                    {p: float(gamma[i]) for p, i in pair_index.items()}, done)


def graph_from_position_counts(counts: Mapping[Key, list[int]], query_ids: Mapping[str, str],
                               examination: Mapping[int, float] | None = None) -> ClickGraph:
    """The click graph of the logged pairs: weight (clicks + 1) / (examined impressions + 2), each
    impression at position k weighted by `examination[k]` (None: 1, the uncorrected CTR)."""
    pairs: dict[tuple[str, str], list[float]] = defaultdict(lambda: [0.0, 0.0])
    for (q, product_id, k), (shown, clicks) in counts.items():
        qid = query_ids.get(q) or log_query_id(q)
        weight = 1.0 if examination is None else examination.get(k, min(examination.values(), default=1.0))
        pairs[(qid, product_id)][0] += shown * weight
        pairs[(qid, product_id)][1] += clicks
    edges = [(qid, pid, min(1.0, (clicks + 1) / (examined + 2))) for (qid, pid), (examined, clicks) in pairs.items()
             if examined > 0 or clicks > 0]
    return ClickGraph.from_edges(edges)


def with_teacher_edges(logged: ClickGraph, teacher: ClickGraph) -> ClickGraph:
    """The logged graph, plus the teacher-built edges of the pairs the logs have not reached."""
    edges = logged.edges()
    seen = {(q, p) for q, p, _ in edges}
    return ClickGraph.from_edges(edges + [(q, p, w) for q, p, w in teacher.edges() if (q, p) not in seen])
