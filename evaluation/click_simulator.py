"""Simulated shoppers who search and click through the real page over HTTP, so the closed loop
(logging, interleaving, logs to graph) can be tested and measured without real traffic.

    sim = ClickSimulator("http://127.0.0.1:8080", queries, ClickModel(kind="pbm"), seed=0)
    report = sim.run(sessions=500, max_seconds=60)

Each session: a new shopper (a seeded session id in the page's cookie) picks one of `queries` at
random, GETs /api/search, reads page 1 of the reranked column and clicks results by the click model,
each click a GET of the page's own result link (/click), which the page logs. Bounded by `sessions`
and `max_seconds`, whichever comes first; the same seed gives the same shoppers, queries and coin
flips (so the same clicks for the same pages).

Click models (Chuklin, Markov and de Rijke, "Click Models for Web Search", 2015), parameters
documented in `ClickModel`:

- **pbm**, position-based: position k is examined with probability theta_k = 1 / k ** eta; an examined
  result is clicked with its attractiveness alpha; any number of clicks.
- **cascade**: the shopper reads top down, clicks a result with probability alpha and stops there.

Attractiveness from the human grades (Home Depot's relevance, as catalog gains 0..max_grade):
alpha = floor + (ceiling - floor) * (grade / max_grade) ** 2; an ungraded result has the floor.

`simulated_events` is the same shoppers without the page: it shows each query's lists as the page
would (the served model's order, team-drafted with BM25's for a share of searches) and returns the
impressions and clicks the page would have logged, so thousands of sessions over queries whose
lists do not change (the loop's graph curve, reranker/training/loop_curve.py) cost no HTTP.
"""

from __future__ import annotations

import json
import random
import hashlib
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from http.cookiejar import Cookie, CookieJar
from typing import Literal

from evaluation.interleaving import ARMS, team_draft
from indexer.click_logs import query_key

__all__ = ["ClickModel", "ClickSimulator", "ShownLists", "SimulationReport", "simulated_events"]


@dataclass(frozen=True)
class ClickModel:
    kind: Literal["pbm", "cascade"] = "pbm"
    eta: float = 1.0  # pbm: examination theta_k = 1 / k ** eta (Joachims et al. 2017 use eta = 1)
    floor: float = 0.02  # attractiveness of an ungraded or grade-0 result
    ceiling: float = 0.9  # attractiveness of a result of the highest grade
    max_grade: float = 2.0  # the catalog's highest gain (Home Depot's 3.0 relevance is gain 2.0)

    def attractiveness(self, grade: float | None) -> float:
        share = max(0.0, min(1.0, (grade or 0.0) / self.max_grade))
        return self.floor + (self.ceiling - self.floor) * share ** 2

    def clicks(self, grades: Sequence[float | None], rng: random.Random) -> list[int]:
        """0-based indices of the clicked results of one shown list."""
        clicked = []
        for i, grade in enumerate(grades):
            alpha = self.attractiveness(grade)
            if self.kind == "cascade":
                if rng.random() < alpha:
                    return [i]
                continue
            examined = rng.random() < 1.0 / (i + 1) ** self.eta
            attracted = rng.random() < alpha
            if examined and attracted:
                clicked.append(i)
        return clicked


@dataclass(frozen=True)
class SimulationReport:
    sessions: int
    searches: int
    clicks: int
    seconds: float
    failed: int  # searches or clicks the page did not answer with success


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):  # a click's 303 is the end of it: no product page fetched
        return None


class ClickSimulator:
    def __init__(self, base_url: str, queries: Mapping[str, Mapping[str, float]], model: ClickModel,
                 seed: int = 0, cookie: str = "shopsearch_session", timeout_s: float = 10.0) -> None:
        """`queries`: query text -> its graded products (product id -> gain)."""
        self.base_url = base_url.rstrip("/")
        self.queries = sorted(queries.items())
        self.model, self.seed, self.cookie, self.timeout_s = model, seed, cookie, timeout_s

    def _opener(self, session_id: str) -> urllib.request.OpenerDirector:
        jar = CookieJar()
        host = urllib.parse.urlsplit(self.base_url).hostname or "127.0.0.1"
        jar.set_cookie(Cookie(0, self.cookie, session_id, None, False, host, False, False, "/", True, False,
                              None, False, None, None, {}))
        return urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar), _NoRedirect)

    def run(self, sessions: int, max_seconds: float) -> SimulationReport:
        rng = random.Random(self.seed)
        began = time.monotonic()
        done = searches = clicks = failed = 0
        while done < sessions and time.monotonic() - began < max_seconds:
            session_id = f"sim-{self.seed}-{rng.getrandbits(64):016x}"
            opener = self._opener(session_id)
            text, grades = self.queries[rng.randrange(len(self.queries))]
            answer = self._get(opener, f"/api/search?q={urllib.parse.quote(text)}")
            done += 1
            if answer is None:
                failed += 1
                continue
            searches += 1
            rows = answer["reranked"]
            for i in self.model.clicks([grades.get(row["product_id"]) for row in rows], rng):
                row = rows[i]
                link = "/click?" + urllib.parse.urlencode({"i": answer["impression_id"] or "", "p": row["product_id"],
                                                          "n": row["rank"], "a": row["arm"], "q": answer["query"]})
                clicks += 1
                failed += self._get(opener, link, expect=303) is None
        return SimulationReport(done, searches, clicks, time.monotonic() - began, failed)

    def _get(self, opener: urllib.request.OpenerDirector, path: str, expect: int = 200) -> dict | None:
        try:
            with opener.open(self.base_url + path, timeout=self.timeout_s) as response:
                return json.loads(response.read()) if expect == 200 else {}
        except urllib.error.HTTPError as err:
            return {} if err.code == expect else None
        except (OSError, ValueError):
            return None


@dataclass(frozen=True)
class ShownLists:
    """What the page would rank for one query: the served model's order and BM25's (product ids, best
    first), and the query's human grades (product id -> gain) that drive the shoppers' clicks."""

    model: list[str]
    bm25: list[str]
    grades: Mapping[str, float]


def simulated_events(queries: Mapping[str, ShownLists], model: ClickModel, sessions: int, seed: int = 0,
                     page_size: int = 10, interleave_share: float = 0.0) -> list[list[dict]]:
    """The events `sessions` seeded shoppers would leave on the page, one list per session (an
    impression of page 1, then its clicks), in the page's event shape (frontend/events.py).

    Each shopper searches one of `queries` (text -> lists) at random; the page shows the model's
    order, or for `interleave_share` of the draws its team draft with BM25's, drawn per session and
    query as SearchService does. The same seed gives the same sessions, and a run with more
    sessions begins with the sessions of a run with fewer (so volumes of one curve are nested)."""
    rng = random.Random(seed)
    texts = sorted(queries)
    out = []
    for n in range(sessions):
        session_id = f"sim-{seed}-{n:08d}"
        text = texts[rng.randrange(len(texts))]
        lists = queries[text]
        draw = random.Random(f"{session_id}\x00{query_key(text)}")
        drafted = interleave_share > 0 and draw.random() < interleave_share
        if drafted:
            shown = team_draft(lists.model, lists.bm25, ARMS, draw, length=page_size)
        else:
            shown = [(pid, ARMS[0]) for pid in lists.model[:page_size]]
        impression_id = hashlib.sha1(session_id.encode()).hexdigest()[:16]
        events = [{"type": "impression", "event_id": impression_id, "session_id": session_id, "query": text,
                   "items": [{"product_id": pid, "position": k, "arm": arm} for k, (pid, arm) in enumerate(shown, 1)],
                   "interleaved": drafted}]
        for i in model.clicks([lists.grades.get(pid) for pid, _ in shown], rng):
            pid, arm = shown[i]
            events.append({"type": "click", "event_id": f"{impression_id}-{i + 1}", "session_id": session_id,
                           "impression_id": impression_id, "query": text, "product_id": pid, "position": i + 1,
                           "arm": arm})
        out.append(events)
    return out
