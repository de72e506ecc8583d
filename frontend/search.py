"""One search as the page shows it: BM25 from Elasticsearch, the top-N reranked, within a time budget.

    service = SearchService(es, RerankerLink("127.0.0.1:50051"), settings.web, alias="products")
    result = service.search("cordless drill", page=1)

- Elasticsearch answers with the BM25 candidates (`es_config.retrieval`, the one first stage).
- Its top `rerank_depth` go to the reranker with a deadline; the final list is the reranked top-N,
  then the BM25 hits past N in BM25 order. Both columns page through their own list.
- With `rerank_path="plugin"` the page sends one `_search` with the shopsearch rescore clause
  instead: Elasticsearch's plugin calls the reranker (under the node's own deadline), and each
  hit's explanation says whether the model placed it and why not. `answered_by` says which path
  gave the reranked column: "service", "plugin", or "bm25" (a fallback, or not asked).
- The whole search keeps to `budget_ms`: Elasticsearch gets at most `es_timeout_ms` of it, the
  reranker what is left up to `rerank_deadline_ms`. A reranker that is down, slow or refuses the
  request costs at most its deadline: the answer is the BM25 order with `status="fallback"` and a
  plain `notice` saying why.
- Elasticsearch down or the index missing raises `SearchUnavailable` (one line); a bad query or page
  raises `BadRequest` (one line). Nothing else is expected to leave this module.
- Where the query has human grades, each row carries its grade and each column its NDCG@10
  (linear gain, unjudged = 0, the variant of evaluation/metrics.py; undefined, so None, when the
  query has no item of positive grade).
"""

from __future__ import annotations

import logging
import math
import random
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field, replace
from typing import Literal

import grpc
from elasticsearch import ApiError, Elasticsearch, TransportError

from common.errors import ShopsearchError
from common.results import Candidate, Explanation, Neighbor, Ranked
from common.settings import WebSettings
from es_config import retrieval
from evaluation.interleaving import arms_of, team_draft
from evaluation.ndcg import ndcg_at
from indexer.click_logs import query_key  # grades, draws and logs: the query as typed, case and spacing aside
from reranker.client import Balancing, RerankClient, RerankError, RerankResult

__all__ = ["BadRequest", "FirstStage", "Grades", "Outcome", "Refused", "RerankerLink", "Row", "SearchResult",
           "SearchService", "SearchUnavailable", "Status", "example_pool", "make_es", "ndcg_at", "pick_examples"]

log = logging.getLogger(__name__)

MAX_RESULT_WINDOW = 10_000  # Elasticsearch's index.max_result_window
RENDER_RESERVE_MS = 30.0  # kept back from the budget for building the answer
NEIGHBOR_ROWS = 6  # neighbors shown per item in the explain view
NDCG_K = 10
TITLE_CACHE = 100_000  # product titles remembered for naming neighbors


class BadRequest(ShopsearchError, ValueError):
    """A query or page the page will not search for; the message is one line, for the user."""


class SearchUnavailable(ShopsearchError):
    """Elasticsearch cannot answer (down, starting, index missing); the message is one line."""


# -- human grades ------------------------------------------------------------------------------------

@dataclass
class Grades:
    """Human grades by query text, and query ids -> text (to name query neighbors in explain)."""

    by_query: dict[str, dict[str, float]] = field(default_factory=dict)
    query_texts: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_catalog(cls, catalog) -> "Grades":
        by_query: dict[str, dict[str, float]] = {}
        texts = {q.query_id: q.text for q in catalog.queries.values()}
        for q, items in catalog.judgments_by_query().items():
            if q in texts:
                merged = by_query.setdefault(query_key(texts[q]), {})
                for product_id, gain in items.items():
                    merged.setdefault(product_id, gain)
        return cls(by_query, texts)

    def of(self, query: str) -> dict[str, float] | None:
        return self.by_query.get(query_key(query))


# -- the typed rows ------------------------------------------------------------------------------------

Status = Literal["reranked", "partial", "fallback", "bm25"]
"""What the reranked column is: "reranked", "partial" (some items placed by BM25), "fallback" (the
BM25 order: the reranker or the plugin did not answer) or "bm25" (not asked)."""


def bm25_order(candidates: Iterable[Candidate]) -> list[Ranked]:
    """Candidates in their BM25 order as Ranked placed by BM25 (score: the BM25 score)."""
    return [Ranked(c.product_id, c.bm25, c.bm25_rank, c.bm25, c.bm25_rank, False) for c in candidates]


@dataclass(frozen=True)
class Row:
    """One product in one column: the typed `Ranked` (rank: its place in this column), its title and
    the query's human grade for it."""

    ranked: Ranked
    title: str
    grade: float | None = None  # human grade, where the query has one for this product
    team: str | None = None  # interleaved: the arm that contributed it

    product_id = property(lambda self: self.ranked.product_id)
    rank = property(lambda self: self.ranked.rank)  # 1-based, in this column's order
    bm25 = property(lambda self: self.ranked.bm25)
    bm25_rank = property(lambda self: self.ranked.bm25_rank)
    movement = property(lambda self: self.ranked.movement)
    # the reranker's explanation, neighbors labelled; reranked column only
    explanation = property(lambda self: self.ranked.explanation)

    @property
    def score(self) -> float | None:
        """The reranker's score; None: placed by BM25."""
        return self.ranked.score if self.ranked.reranked else None

    @property
    def arm(self) -> str:
        """The ranker that placed it: its interleaving team, else "model" or "bm25"."""
        return self.team or ("model" if self.ranked.reranked else "bm25")

    def to_dict(self) -> dict:
        e = self.explanation
        return {"product_id": self.product_id, "title": self.title, "rank": self.rank, "bm25": self.bm25,
                "bm25_rank": self.bm25_rank, "score": self.score, "grade": self.grade,
                "explanation": asdict(e) if e is not None else None, "movement": self.movement,
                "arm": self.arm}


@dataclass
class SearchResult:
    query: str
    page: int
    pages: int
    total_hits: int  # BM25 hits, counted as far as the pages reach
    more_hits: bool  # True: there are more than total_hits
    bm25: list[Row]  # this page of the BM25 order
    reranked: list[Row]  # this page of the final order (BM25 order when status is fallback)
    status: Status
    notice: str  # why partial or fallback, in plain words; "" otherwise
    rerank_depth: int
    path: str = "service"  # how the page asked for the reranked column: "service" or "plugin"
    model: str = ""  # name and version of the model that reranked
    es_ms: float = 0.0  # Elasticsearch round trip
    rerank_ms: float = 0.0  # reranker round trip (or the time lost waiting for it)
    explain_ms: float = 0.0  # naming the explain view's neighbors (titles: cached, else one mget)
    total_ms: float = 0.0
    server_ms: dict[str, float] = field(default_factory=dict)  # the reranker's own stage timings
    graded: int = 0  # how many of this query's products have a human grade
    ndcg_bm25: float | None = None
    ndcg_reranked: float | None = None  # interleaved: of the interleaved list
    interleaved: bool = False  # the reranked column interleaves the model's order and BM25's (rows' `team`)

    @property
    def answered_by(self) -> str:
        """Which path gave the reranked column: "service", "plugin" or "bm25" (fallback or not asked)."""
        return self.path if self.status in ("reranked", "partial") else "bm25"

    def to_dict(self) -> dict:
        out = {name: getattr(self, name) for name in self.__dataclass_fields__}
        out["server_ms"] = dict(self.server_ms)
        for column in ("bm25", "reranked"):
            out[column] = [row.to_dict() for row in getattr(self, column)]
        out["answered_by"] = self.answered_by
        return out


@dataclass(frozen=True)
class Refused:
    """Elasticsearch refused the plugin's rescore clause (no plugin, a window over its limit...)."""

    reason: str


@dataclass(frozen=True)
class FirstStage:
    """What Elasticsearch answered: the BM25 candidates, and the plugin's reranking where asked for."""

    candidates: list[Candidate]  # BM25 order, ranks from 1
    total: int
    more: bool  # there are more hits than `total`
    es_ms: float
    rescored: retrieval.Rescored | Refused | None = None  # None: the plugin was not asked


@dataclass(frozen=True)
class Outcome:
    """The reranked column's whole list (`ranked`, its ranks the final positions) and how it came."""

    status: Status
    ranked: list[Ranked]
    notice: str = ""
    model: str = ""
    server_ms: dict[str, float] = field(default_factory=dict)
    rerank_ms: float = 0.0
    teams: dict[str, str] = field(default_factory=dict)  # interleaved: product id -> the arm that picked it

    @classmethod
    def bm25(cls, candidates: list[Candidate], status: Status = "bm25", notice: str = "") -> "Outcome":
        return cls(status, bm25_order(candidates), notice)


def placed(items: Iterable[Ranked]) -> list[Ranked]:
    """Items in their final order, ranked by position from 1 (the BM25 score where the model did not place one)."""
    return [replace(item, rank=rank, score=item.score if item.reranked else item.bm25)
            for rank, item in enumerate(items, start=1)]


# -- the reranker link ---------------------------------------------------------------------------------

class RerankerLink:
    """The page's way to the reranker: one shared client, replaced after the server drops away.

    grpc's own reconnect backs off for up to two minutes after a failed connection, so a restarted
    reranker could wait that long for traffic; after UNAVAILABLE this opens a fresh channel (at
    most one per `rebuild_every_s`), which connects at once. Old channels are closed later, when no
    call can still be on them.
    """

    def __init__(self, target: str, rebuild_every_s: float = 0.5, balancing: Balancing | None = None) -> None:
        self.target = target
        self.rebuild_every_s = rebuild_every_s
        self.balancing = balancing  # several replicas: gRPC's round robin, health checks and retries
        self._client = RerankClient(target, balancing=balancing)
        self._built = time.monotonic()
        self._retired: list[tuple[float, RerankClient]] = []
        self._lock = threading.Lock()

    def rerank(self, query: str, candidates: list[Candidate], explain: bool, timeout_s: float) -> RerankResult:
        client = self._client
        try:
            return client.rerank(query, candidates, explain=explain, timeout=timeout_s)
        except RerankError as err:
            if err.code is grpc.StatusCode.UNAVAILABLE:
                self._rebuild(client)
            raise

    def health(self, timeout_s: float = 0.5) -> str:
        try:
            return self._client.health(timeout=timeout_s)
        except RerankError as err:
            if err.code is grpc.StatusCode.UNAVAILABLE:
                self._rebuild(self._client)
            return f"down ({err.code.name})"

    def _rebuild(self, failed: RerankClient) -> None:
        with self._lock:
            now = time.monotonic()
            if self._client is not failed or now - self._built < self.rebuild_every_s:
                return
            self._retired.append((now, failed))
            self._client, self._built = RerankClient(self.target, balancing=self.balancing), now
            keep = []
            for since, old in self._retired:
                if now - since > 30.0:  # far past any call's deadline
                    old.close()
                else:
                    keep.append((since, old))
            self._retired = keep

    def close(self) -> None:
        with self._lock:
            for _, old in self._retired:
                old.close()
            self._retired = []
            self._client.close()


# -- the search ----------------------------------------------------------------------------------------

def parse_page(raw: str | None, max_page: int) -> int:
    if raw is None or raw == "":
        return 1
    try:
        page = int(raw)
    except ValueError:
        raise BadRequest(f"page must be a whole number from 1 to {max_page}, not {raw[:20]!r}") from None
    if not 1 <= page <= max_page:
        raise BadRequest(f"page must be a whole number from 1 to {max_page}, not {page}")
    return page


def check_query(raw: str | None, max_chars: int) -> str:
    query = " ".join((raw or "").split())
    if not query:
        raise BadRequest("the query is empty; type what you are looking for")
    if len(query) > max_chars:
        raise BadRequest(f"the query has {len(query):,} characters; the most this page takes is {max_chars}")
    return query


def fallback_notice(err: RerankError, deadline_ms: float) -> str:
    code = err.code
    if code is grpc.StatusCode.UNAVAILABLE:
        return "The reranker is not answering, so this is the BM25 order."
    if code is grpc.StatusCode.DEADLINE_EXCEEDED:
        return f"The reranker did not answer within its {deadline_ms:.0f} ms deadline, so this is the BM25 order."
    return f"The reranker refused this search ({code.name}: {err.details}), so this is the BM25 order."


def plugin_fallback_notice(reason: str) -> str:
    if reason == "unavailable":
        return "The reranker is not answering Elasticsearch's shopsearch plugin, so this is the BM25 order."
    if reason == "deadline_exceeded":
        return "The reranker did not answer within the shopsearch plugin's deadline, so this is the BM25 order."
    return f"The shopsearch plugin could not rerank this search ({reason}), so this is the BM25 order."


class SearchService:
    def __init__(self, es: Elasticsearch, reranker: RerankerLink | None, config: WebSettings,
                 grades: Grades | None = None, es_url: str = "", *, alias: str,
                 challenger: RerankerLink | None = None) -> None:
        self.es = es
        self.reranker = reranker
        # a second model version, interleaved against the served one (web.interleave_target), else BM25
        self.challenger = challenger
        self.config = config  # the settings' web group
        self.alias = alias  # the index alias searched (settings.index_alias)
        self.grades = grades or Grades()
        self.es_url = es_url
        self._title_cache: OrderedDict[str, str] = OrderedDict()  # product id -> title, from answers
        self._titles_lock = threading.Lock()

    # -- the steps ---------------------------------------------------------------------------------

    def _bm25(self, query: str, size: int, timeout_s: float) -> retrieval.Retrieved:
        """The BM25 candidates; hits are counted as far as the pages go."""
        try:
            return retrieval.search(self.es, self.alias, query, size, timeout_s=timeout_s,
                                    track_total_hits=self._count_to)
        except ApiError as err:
            raise self._unavailable(err) from None
        except TransportError as err:
            raise self._unavailable(err) from None

    @property
    def _count_to(self) -> int:
        return min(MAX_RESULT_WINDOW, self.config.page_size * self.config.max_page)

    def _unavailable(self, err: ApiError | TransportError) -> SearchUnavailable:
        if isinstance(err, TransportError):
            where = f" at {self.es_url}" if self.es_url else ""
            return SearchUnavailable(f"Elasticsearch is not answering{where} ({type(err).__name__})")
        if err.meta.status == 404:
            return SearchUnavailable(f"Elasticsearch has no index {self.alias!r}; run `shopsearch index` first")
        return SearchUnavailable(f"Elasticsearch could not search (HTTP {err.meta.status}: {err.message})")

    def _rescored(self, query: str, size: int, send_text: bool, timeout_s: float) -> retrieval.Rescored | Refused:
        """The plugin's search, or why Elasticsearch refused its rescore clause (no plugin installed,
        a window over its limit, fail_on_error set): the caller then searches BM25 alone."""
        try:
            return retrieval.rescore(self.es, self.alias, query, size, self.config.rerank_depth,
                                     send_text=send_text, timeout_s=timeout_s, track_total_hits=self._count_to)
        except ApiError as err:
            if err.meta.status == 404:
                raise self._unavailable(err) from None
            if err.meta.status in (429, 503):  # the node is overloaded or starting: not the plugin's doing
                raise self._unavailable(err) from None
            return Refused(es_reason(err))
        except TransportError as err:
            raise self._unavailable(err) from None

    def _remember(self, titles: dict[str, str]) -> None:
        with self._titles_lock:
            for pid, title in titles.items():
                self._title_cache[pid] = title
                self._title_cache.move_to_end(pid)
            while len(self._title_cache) > TITLE_CACHE:
                self._title_cache.popitem(last=False)

    def _titles(self, ids: set[str], timeout_s: float) -> dict[str, str]:
        """Titles of neighbor products: remembered from earlier answers, else one mget (skipped when
        the budget is nearly spent; the page then shows ids)."""
        with self._titles_lock:
            known = {pid: self._title_cache[pid] for pid in ids if pid in self._title_cache}
        missing = sorted(ids - set(known))
        if not missing or timeout_s < 0.02:
            return known
        try:
            docs = self.es.options(request_timeout=timeout_s, max_retries=0).mget(
                index=self.alias, ids=missing, source_includes=["title"])["docs"]
        except (ApiError, TransportError):
            return known
        fetched = {d["_id"]: d["_source"].get("title", "") for d in docs if d.get("found")}
        self._remember(fetched)
        return {**known, **fetched}

    def _explain_views(self, items: list[Ranked], titles: dict[str, str], deadline: float) -> dict[str, Explanation]:
        item_paths = {"Q-I", "I-Q-I"}  # paths whose nodes are products; the others end at queries
        wanted = {n.node_id for item in items if item.explanation for n in item.explanation.neighbors
                  if n.path in item_paths and n.node_id not in titles}
        left_s = deadline - time.monotonic() - RENDER_RESERVE_MS / 1000
        titles = {**titles, **self._titles(wanted, min(0.2, left_s))}
        views = {}
        for item in items:
            e: Explanation | None = item.explanation
            if e is None:
                continue
            neighbors = sorted(e.neighbors, key=lambda n: -n.attention)[:NEIGHBOR_ROWS]
            views[item.product_id] = Explanation(e.zero_order, e.k_order, e.bm25_part, tuple(
                Neighbor(n.path, n.node_id, n.attention,
                         titles.get(n.node_id, n.node_id) if n.path in item_paths
                         else self.grades.query_texts.get(n.node_id, n.node_id))
                for n in neighbors))
        return views

    # -- one search ----------------------------------------------------------------------------------

    def search(self, query: str, page: int = 1, rerank: bool = True, send_text: bool | None = None,
               session: str | None = None) -> SearchResult:
        """One page of both columns; `send_text` overrides the config's choice of sending titles;
        `session` (a random id) draws whether and how this search is interleaved, the same for every
        page of the same query in the same session."""
        began = time.monotonic()
        cfg = self.config
        send_text = cfg.send_text if send_text is None else send_text
        query = check_query(query, cfg.max_query_chars)
        if not 1 <= page <= cfg.max_page:
            raise BadRequest(f"page must be a whole number from 1 to {cfg.max_page}, not {page}")
        deadline = began + cfg.budget_ms / 1000
        window = slice((page - 1) * cfg.page_size, page * cfg.page_size)
        size = min(MAX_RESULT_WINDOW, max(cfg.rerank_depth, window.stop, NDCG_K))

        via_plugin = rerank and cfg.rerank_path == "plugin"
        first = self._first_stage(query, size, send_text, via_plugin, deadline)
        self._remember({c.product_id: c.title for c in first.candidates})
        if via_plugin:
            outcome = self._via_plugin(first)
        elif rerank and first.candidates and self.reranker is not None:
            outcome = self._via_service(query, first.candidates, send_text, deadline)
        else:
            outcome = Outcome.bm25(first.candidates)
        if session is not None and outcome.status == "reranked" and cfg.interleave_share > 0:
            draw = random.Random(f"{session}\x00{query_key(query)}")
            outcome = self._interleaved(outcome, draw, lambda: self._challenger_order(query, first.candidates,
                                                                                      send_text, deadline))
        return self._page(query, page, window, first, outcome, deadline, began)

    def _first_stage(self, query: str, size: int, send_text: bool, via_plugin: bool, deadline: float) -> FirstStage:
        """BM25 from Elasticsearch; through the plugin's rescore clause when `via_plugin` (one request:
        Elasticsearch's time and the node's call to the reranker), BM25 alone when it is refused."""
        cfg = self.config
        began = time.monotonic()
        rescored: retrieval.Rescored | Refused | None = None
        if via_plugin:
            left_s = deadline - began - RENDER_RESERVE_MS / 1000
            rescored = self._rescored(query, size, send_text,
                                      min((cfg.es_timeout_ms + cfg.rerank_deadline_ms) / 1000, left_s))
        if isinstance(rescored, retrieval.Rescored):
            found: retrieval.Rescored | retrieval.Retrieved = rescored
        else:
            if isinstance(rescored, Refused):
                log.info("plugin rescore refused for %r: %s", query, rescored.reason)
            found = self._bm25(query, size, min(cfg.es_timeout_ms / 1000, deadline - time.monotonic()))
        return FirstStage(found.candidates, found.total, found.total_is_lower_bound,
                          1000 * (time.monotonic() - began), rescored)

    def _via_plugin(self, first: FirstStage) -> Outcome:
        if isinstance(first.rescored, Refused):
            return Outcome.bm25(first.candidates, "fallback", "Elasticsearch refused the shopsearch rescore "
                                f"({first.rescored.reason}), so this is the BM25 order.")
        if first.rescored is None or not first.candidates:
            return Outcome.bm25(first.candidates)
        status, notice = plugin_status(first.rescored)
        if status == "fallback":
            return Outcome.bm25(first.candidates, status, notice)
        return Outcome(status, placed(first.rescored.ranked), notice, f"model {first.rescored.model_version}")

    def _via_service(self, query: str, hits: list[Candidate], send_text: bool, deadline: float,
                     link: RerankerLink | None = None) -> Outcome:
        """The BM25 top `rerank_depth` reordered by the reranker service (`link`, default the served
        model's), the rest after in BM25 order; the BM25 order with a notice when it is down, slow or refuses."""
        cfg = self.config
        link = link or self.reranker
        head = hits[: cfg.rerank_depth]
        candidates = [replace(c, text=c.title) for c in head] if send_text else head
        timeout_ms = min(cfg.rerank_deadline_ms, 1000 * (deadline - time.monotonic()) - RENDER_RESERVE_MS)
        if timeout_ms < 5:
            return Outcome.bm25(hits, "fallback", "Elasticsearch used up the time for this search, so this is the BM25 order.")
        began = time.monotonic()
        try:
            result = link.rerank(query, candidates, cfg.explain and link is self.reranker, timeout_ms / 1000)
        except RerankError as err:
            log.info("rerank fell back for %r: %s", query, err)
            return replace(Outcome.bm25(hits, "fallback", fallback_notice(err, timeout_ms)),
                           rerank_ms=1000 * (time.monotonic() - began))
        return Outcome("partial" if result.partial else "reranked", placed(result.items + bm25_order(hits[len(head):])),
                       f"Partly reranked: {result.reason}." if result.partial else "",
                       f"{result.model_name} {result.model_version}", result.timings_ms,
                       1000 * (time.monotonic() - began))

    def _challenger_order(self, query: str, hits: list[Candidate], send_text: bool, deadline: float) -> Outcome | None:
        """The challenger model's reranking of the same candidates (web.interleave_target); None when
        there is none, or it did not rerank them all (down, slow, refused, partial)."""
        if self.challenger is None:
            return None
        other = self._via_service(query, hits, send_text, deadline, self.challenger)
        return other if other.status == "reranked" else None

    def _interleaved(self, outcome: Outcome, rng: random.Random, challenger: Callable[[], Outcome | None]) -> Outcome:
        """The model's order team-drafted, for `interleave_share` of the draws, with the challenger
        model's (`challenger()`, asked only then) when one is set, else with BM25's; as it was when
        not drawn, or when the challenger does not answer (the search stays the served model's)."""
        if rng.random() >= self.config.interleave_share:
            return outcome
        by_id = {item.product_id: item for item in outcome.ranked}
        if self.challenger is not None:
            other = challenger()
            if other is None:
                return outcome
            order = [item.product_id for item in other.ranked]
            outcome = replace(outcome, model=f"{outcome.model} against {other.model}",
                              rerank_ms=outcome.rerank_ms + other.rerank_ms)
        else:
            order = [item.product_id for item in sorted(outcome.ranked, key=lambda item: item.bm25_rank)]
        teams = team_draft([item.product_id for item in outcome.ranked], order, arms_of(self.challenger is not None), rng)
        return replace(outcome, ranked=[replace(by_id[pid], rank=rank) for rank, (pid, _) in enumerate(teams, 1)],
                       teams=dict(teams))

    def _page(self, query: str, page: int, window: slice, first: FirstStage, outcome: Outcome,
              deadline: float, began: float) -> SearchResult:
        """One page of both columns, with grades, NDCG@10 and (reranked by the service) the explain view."""
        cfg = self.config
        grades = self.grades.of(query)
        graded = grades or {}
        reranked = outcome.status in ("reranked", "partial")
        titles = {c.product_id: c.title for c in first.candidates}
        shown, views, explain_ms = outcome.ranked[window], {}, 0.0
        if reranked and cfg.explain and cfg.rerank_path == "service":  # the plugin's answer has no explain view
            explain_began = time.monotonic()
            views = self._explain_views(shown, titles, deadline)
            explain_ms = 1000 * (time.monotonic() - explain_began)
        shown = [replace(item, explanation=views.get(item.product_id)) for item in shown]

        def rows(items: list[Ranked], teams: dict[str, str]) -> list[Row]:
            return [Row(item, titles[item.product_id], graded.get(item.product_id), teams.get(item.product_id))
                    for item in items]

        bm25 = bm25_order(first.candidates)
        pages = max(1, min(cfg.max_page, math.ceil(min(first.total, MAX_RESULT_WINDOW) / cfg.page_size)))
        return SearchResult(
            query=query, page=page, pages=pages, total_hits=first.total, more_hits=first.more,
            bm25=rows(bm25[window], {}), reranked=rows(shown, outcome.teams), status=outcome.status, notice=outcome.notice,
            rerank_depth=cfg.rerank_depth, path=cfg.rerank_path, model=outcome.model, es_ms=first.es_ms,
            rerank_ms=outcome.rerank_ms, explain_ms=explain_ms, total_ms=1000 * (time.monotonic() - began),
            server_ms=outcome.server_ms, graded=len(graded),
            ndcg_bm25=ndcg_at([r.product_id for r in bm25], graded, NDCG_K) if grades else None,
            ndcg_reranked=(ndcg_at([r.product_id for r in outcome.ranked], graded, NDCG_K)
                           if grades and reranked else None), interleaved=bool(outcome.teams))

    def known_products(self, ids: set[str], timeout_s: float = 1.0) -> set[str]:
        """Which of `ids` are in the catalog (the event API refuses events about unknown products)."""
        if not ids:
            return set()
        try:
            docs = self.es.options(request_timeout=timeout_s, max_retries=0).mget(
                index=self.alias, ids=sorted(ids), source=False)["docs"]
        except (ApiError, TransportError) as err:
            raise self._unavailable(err) from None
        return {d["_id"] for d in docs if d.get("found")}

    def title_of(self, product_id: str) -> str | None:
        """A product's title (the page a result link leads to); None: no such product."""
        found = self._titles({product_id}, self.config.es_timeout_ms / 1000)
        return found.get(product_id)

    def health(self) -> dict[str, str]:
        try:
            es = self.es.options(request_timeout=0.5, max_retries=0).cluster.health()["status"]
        except (ApiError, TransportError) as err:
            es = f"down ({type(err).__name__})"
        reranker = self.reranker.health() if self.reranker is not None else "off"
        return {"elasticsearch": es, "reranker": reranker, "rerank_path": self.config.rerank_path}


def plugin_status(rescored: retrieval.Rescored) -> tuple[Status, str]:
    """(status, notice) of a plugin search, from its hits' structured outcomes (retrieval.rescore)."""
    placed = sum(r.reranked for r in rescored.ranked)
    failed = ", ".join(sorted(rescored.fallbacks))
    if not placed:
        if rescored.fallbacks:
            return "fallback", plugin_fallback_notice(failed)
        return "fallback", "The shopsearch plugin did not rerank this search, so this is the BM25 order."
    if rescored.fallbacks:  # some shards reranked, others kept BM25 order
        return "partial", f"Partly reranked: some shards of the index kept BM25 order ({failed})."
    if rescored.unscored:
        return "partial", f"Partly reranked: {rescored.unscored[0]}."
    return "reranked", ""


def es_reason(err: ApiError) -> str:
    """Elasticsearch's own reason for refusing a request, in one line."""
    body = err.body if isinstance(err.body, dict) else {}
    error = body.get("error")
    reason = error.get("reason") if isinstance(error, dict) else error
    causes = error.get("root_cause") if isinstance(error, dict) else None
    if causes and isinstance(causes[0], dict) and causes[0].get("reason"):
        reason = causes[0]["reason"]
    reason = " ".join(str(reason or err.message or f"HTTP {err.meta.status}").split())
    single = re.fullmatch(r"Validation Failed: 1: (.*?);?", reason)  # Elasticsearch's list of one
    return (single.group(1) if single else reason)[:300]


def make_es(url: str, timeout_ms: float) -> Elasticsearch:
    """A client that fails fast: no retries, no start-up check (the page starts while ES is down)."""
    return Elasticsearch(url, request_timeout=timeout_ms / 1000, max_retries=0, retry_on_timeout=False)


# -- example queries -----------------------------------------------------------------------------------

def pick_examples(service: SearchService, pool: list[str], n: int) -> list[str]:
    """Up to `n` of the graded `pool` queries where reranking changes NDCG@10 most for the better.

    Raises SearchUnavailable, or returns [] when the reranker did not answer (try again later).
    """
    gains, fallbacks = [], 0
    for text in pool:
        try:
            result = service.search(text)
        except BadRequest:
            continue
        if result.status == "fallback":
            fallbacks += 1
            if fallbacks >= 3 and not gains:
                return []  # the reranker is not there yet
            continue
        if result.ndcg_bm25 is None or result.ndcg_reranked is None:
            continue
        gains.append((result.ndcg_reranked - result.ndcg_bm25, text))
    gains.sort(key=lambda pair: -pair[0])
    better = [text for gain, text in gains if gain > 0]
    return (better or [text for _, text in gains])[:n]


def example_pool(test_queries: Iterable[str], grades: Grades, size: int) -> list[str]:
    """Test-split query texts with at least three grades and one positive grade, in a stable order."""
    seen, pool = set(), []
    for text in sorted(test_queries, key=query_key):
        key = query_key(text)
        g = grades.by_query.get(key, {})
        if key in seen or len(g) < 3 or not any(v > 0 for v in g.values()):
            continue
        seen.add(key)
        pool.append(text)
    # spread over the alphabet instead of the first `size` in it
    step = max(1, len(pool) // max(1, size))
    return pool[::step][:size]
