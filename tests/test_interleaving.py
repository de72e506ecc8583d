"""Team-draft interleaving: golden drafts for seeded inputs, the verdict's counts and sign test, and
end to end through the real page (real Elasticsearch, the real gRPC service, HTTP on loopback):
seeded simulated shoppers (evaluation/click_simulator.py) find that BM25 beats its own reverse order,
and `shopsearch abtest report` and /abtest say so."""

from __future__ import annotations

import random
import re
import urllib.request

import pytest
from typer.testing import CliRunner

from common.results import Explanation, Reranking, ranked
from common.settings import EventSettings, RerankSettings, WebSettings
from es_config.events import read_events
from evaluation.click_simulator import ClickModel, ClickSimulator
from evaluation.interleaving import ARMS, MODEL_ARMS, Outcome, compare, outcomes_of, sign_test, team_draft
from frontend.app import BackgroundServer, create_app
from frontend.events import EventLog, new_id
from frontend.search import Grades, RerankerLink, SearchService, make_es
from reranker.server.app import RerankServer
from searchstack.cli import app
from tests.conftest import free_port
from tests.shop_page import GRADES, page_catalog

# -- the draft -------------------------------------------------------------------------------------------

def test_team_draft_golden_outcomes_for_seeded_inputs() -> None:
    model, bm25 = ["p1", "p2", "p3", "p4", "p5", "p6"], ["p6", "p5", "p4", "p3", "p2", "p1"]
    assert team_draft(model, bm25, ARMS, random.Random(0)) == [
        ("p6", "bm25"), ("p1", "model"), ("p5", "bm25"), ("p2", "model"), ("p3", "model"), ("p4", "bm25")]
    assert team_draft(model, bm25, ARMS, random.Random(1)) == [
        ("p1", "model"), ("p6", "bm25"), ("p5", "bm25"), ("p2", "model"), ("p4", "bm25"), ("p3", "model")]
    # shared tops: the first pick takes "a" for its team, the other ranker moves on to its next
    assert team_draft(["a", "b", "c"], ["a", "b", "d", "e"], ARMS, random.Random(7)) == [
        ("a", "model"), ("b", "bm25"), ("c", "model"), ("d", "bm25"), ("e", "bm25")]
    assert team_draft(model, bm25, ARMS, random.Random(0), length=3) == [("p6", "bm25"), ("p1", "model"), ("p5", "bm25")]


def test_each_team_keeps_its_rankers_order_and_the_teams_stay_even() -> None:
    for seed in range(200):
        rng = random.Random(seed)
        a = [f"p{i}" for i in rng.sample(range(30), 12)]
        b = [f"p{i}" for i in rng.sample(range(30), 12)]
        drafted = team_draft(a, b, ARMS, random.Random(seed))
        ids = [pid for pid, _ in drafted]
        assert len(ids) == len(set(ids)) == len(set(a) | set(b))
        for arm, order in zip(ARMS, (a, b)):
            picked = [pid for pid, team in drafted if team == arm]
            assert picked == sorted(picked, key=order.index)  # in its own ranker's order
        model_picks = 0
        for n, (_, team) in enumerate(drafted[: 2 * min(len(a), len(b)) // 2], start=1):
            model_picks += team == "model"
            assert abs(2 * model_picks - n) <= 1 or n > 12  # even teams while both have items


# -- the verdict ---------------------------------------------------------------------------------------

def impression(event_id: str, session: str, arms: list[str]) -> dict:
    return {"type": "impression", "event_id": event_id, "session_id": session, "interleaved": True, "query": "q",
            "items": [{"product_id": f"p{i}", "position": i + 1, "arm": arm} for i, arm in enumerate(arms)]}


def click(impression_id: str, product: str) -> dict:
    return {"type": "click", "event_id": new_id(), "impression_id": impression_id, "product_id": product}


def test_the_verdict_counts_wins_losses_and_ties_and_tests_the_sign() -> None:
    arms = ["model", "bm25", "model", "bm25"]
    events = [impression("i1", "s1", arms), click("i1", "p0"),  # model wins
              impression("i2", "s1", arms), click("i2", "p1"), click("i2", "p1"),  # bm25 wins (one product, once)
              impression("i3", "s2", arms), click("i3", "p0"), click("i3", "p1"),  # tie
              impression("i4", "s2", arms),  # no click: left out
              impression("i5", "s3", arms), click("i5", "p2"), click("i5", "p0"),  # model wins
              {**impression("i6", "s3", arms), "interleaved": False}, click("i6", "p1")]  # not interleaved
    outcomes = outcomes_of(events, ARMS)
    assert outcomes == [Outcome("s1", 1, 0), Outcome("s1", 0, 1), Outcome("s2", 1, 1), Outcome("s3", 2, 0)]
    verdict = compare(outcomes, ARMS, seed=0)
    assert (verdict.wins, verdict.losses, verdict.ties, verdict.sessions) == (2, 1, 1, 3)
    assert verdict.preference == pytest.approx(0.25)
    assert verdict.low <= 0.25 <= verdict.high
    assert verdict.p_value == pytest.approx(1.0)
    assert sign_test(10, 3) == pytest.approx(0.09228515625)  # 2 * P(X <= 3), X ~ Bin(13, 1/2)
    assert compare([], ARMS).impressions == 0


# -- through the page --------------------------------------------------------------------------------------

class ReversedBm25:
    """A deliberately worse ranker: the BM25 order upside down (scores are BM25 ranks)."""

    thread_safe = True
    name, version = "reversed-bm25", "test"

    def warm_up(self) -> None:
        pass

    def rerank(self, query, candidates, explain=False) -> Reranking:
        scores = {c.product_id: (float(c.bm25_rank), Explanation(0.0, 0.0, float(c.bm25_rank))) for c in candidates}
        return Reranking(ranked(candidates, scores), [], {"model": 0.0})


class Bm25Order(ReversedBm25):
    """A second model version that keeps the BM25 order: the better one against ReversedBm25."""

    name, version = "bm25-order", "v2"

    def rerank(self, query, candidates, explain=False) -> Reranking:
        scores = {c.product_id: (-float(c.bm25_rank), Explanation(0.0, 0.0, -float(c.bm25_rank))) for c in candidates}
        return Reranking(ranked(candidates, scores), [], {"model": 0.0})


def serving(model):
    settings = RerankSettings(port=0, grace_s=0, metrics_port=None, reload_poll_s=0)
    with RerankServer(settings, model=model) as server:
        server.wait_ready(60)
        yield server


@pytest.fixture(scope="module")
def reversed_reranker():
    yield from serving(ReversedBm25())


@pytest.fixture(scope="module")
def challenger_reranker():
    yield from serving(Bm25Order())


def interleaving_page(es_url: str, alias: str, target: str, events_prefix: str, share: float = 1.0,
                      challenger: str | None = None):
    events = EventSettings(enabled=True, index_prefix=events_prefix, flush_ms=20.0)
    config = WebSettings(page_size=6, rerank_depth=8, budget_ms=5000, es_timeout_ms=2000, rerank_deadline_ms=2000,
                         explain=False, interleave_share=share, events=events, interleave_target=challenger)
    service = SearchService(make_es(es_url, config.es_timeout_ms), RerankerLink(target), config,
                            Grades.from_catalog(page_catalog()), es_url=es_url, alias=alias,
                            challenger=RerankerLink(challenger) if challenger else None)
    log = EventLog(make_es(es_url, events.write_timeout_ms), events).start()
    return service, BackgroundServer(create_app(service, events=log)), log


def test_an_interleaved_search_keeps_its_draw_for_the_session_and_pages(es_url, page_shop, reversed_reranker, events_prefix) -> None:
    service, _, _ = interleaving_page(es_url, page_shop, reversed_reranker.target, events_prefix)
    first = service.search("cordless drill", 1, session="session-a")
    assert first.status == "reranked" and first.interleaved
    assert {row.arm for row in first.reranked} == {"model", "bm25"}
    again = service.search("cordless drill", 1, session="session-a")
    assert [(r.product_id, r.arm) for r in again.reranked] == [(r.product_id, r.arm) for r in first.reranked]
    second = service.search("cordless drill", 2, session="session-a")
    shown = [r.product_id for r in first.reranked + second.reranked]
    assert len(shown) == len(set(shown)) and [r.rank for r in second.reranked][0] == 7
    plain = service.search("cordless drill", 1)  # no session: not interleaved
    assert not plain.interleaved and {row.arm for row in plain.reranked} <= {"model"}
    off, _, _ = interleaving_page(es_url, page_shop, reversed_reranker.target, events_prefix, share=0.0)
    assert not off.search("cordless drill", 1, session="session-a").interleaved


def shoppers_verdict(es, es_url: str, alias: str, target: str, events_prefix: str, arms: tuple[str, str],
                     challenger: str | None = None):
    """60 seeded shoppers (PBM) on an interleaving page: the verdict of their logged clicks between
    `arms`, and the page's /abtest report."""
    _, server, log = interleaving_page(es_url, alias, target, events_prefix, challenger=challenger)
    grades = {"cordless drill": GRADES["q1"], "drill bits": GRADES["q3"]}
    with server:
        report = ClickSimulator(server.url, grades, ClickModel(kind="pbm"), seed=0).run(sessions=60, max_seconds=60)
        assert log.flush(10)
        with urllib.request.urlopen(server.url + "/abtest", timeout=30) as response:
            page = response.read().decode()
    assert report.failed == 0 and report.searches == 60 and report.clicks > 0
    return compare(outcomes_of(read_events(es, events_prefix), arms), arms), page


def test_simulated_shoppers_find_bm25_better_than_its_reverse(es, es_url, page_shop, reversed_reranker, events_prefix) -> None:
    verdict, page = shoppers_verdict(es, es_url, page_shop, reversed_reranker.target, events_prefix, ARMS)
    # seeded shoppers, a deterministic page: the same clicks every run (150 sessions gave 107 BM25 wins,
    # 2 model wins, 3 ties); the bounds are far from that
    assert verdict.losses > 3 * verdict.wins, verdict
    assert verdict.p_value < 1e-4 and verdict.high < 0, verdict
    assert "<svg" in page and f"<td>{verdict.losses}</td>" in page
    out = CliRunner().invoke(app, ["abtest", "report", "--es-url", es_url],
                             env={"SHOPSEARCH_WEB_EVENTS_INDEX_PREFIX": events_prefix, "COLUMNS": "200"})
    assert out.exit_code == 0, out.output
    assert f" model wins {verdict.wins:,} · ties {verdict.ties:,} · bm25 wins {verdict.losses:,}" in out.output
    assert ": bm25 is preferred" in out.output


def test_the_page_says_it_interleaves_and_its_links_carry_each_results_arm(es_url, page_shop, reversed_reranker, events_prefix) -> None:
    _, server, log = interleaving_page(es_url, page_shop, reversed_reranker.target, events_prefix)
    with server:
        request = urllib.request.Request(server.url + "/?q=cordless+drill", headers={"Cookie": "shopsearch_session=session-b"})
        with urllib.request.urlopen(request, timeout=30) as response:
            html = response.read().decode()
        assert log.flush(10)
    assert 'id="interleaved"' in html
    arms = re.findall(r'data-arm="(\w+)"', html)
    links = re.findall(r'class="result" href="[^"]*&amp;a=(\w+)&amp;', html)
    assert len(arms) == 6 and links == arms and set(arms) == {"model", "bm25"}


# -- two model versions side by side (web.interleave_target) ------------------------------------------------

def test_two_model_versions_are_interleaved_each_team_in_its_own_models_order(
        es_url, page_shop, reversed_reranker, challenger_reranker, events_prefix) -> None:
    service, _, _ = interleaving_page(es_url, page_shop, reversed_reranker.target, events_prefix,
                                      challenger=challenger_reranker.target)
    result = service.search("cordless drill", 1, session="session-a")
    assert result.status == "reranked" and result.interleaved
    assert {row.arm for row in result.reranked} == set(MODEL_ARMS)
    assert result.model == "reversed-bm25 test against bm25-order v2"
    # the served model (reversed BM25) picks worst BM25 first, the challenger (BM25 order) best first
    model = [row.bm25_rank for row in result.reranked if row.arm == "model"]
    challenger = [row.bm25_rank for row in result.reranked if row.arm == "challenger"]
    assert model == sorted(model, reverse=True) and challenger == sorted(challenger)
    assert challenger[0] == 1
    again = service.search("cordless drill", 1, session="session-a")
    assert [(r.product_id, r.arm) for r in again.reranked] == [(r.product_id, r.arm) for r in result.reranked]


def test_a_challenger_that_does_not_answer_leaves_the_served_models_order(es_url, page_shop, reversed_reranker,
                                                                          events_prefix) -> None:
    service, _, _ = interleaving_page(es_url, page_shop, reversed_reranker.target, events_prefix,
                                      challenger=f"127.0.0.1:{free_port()}")
    result = service.search("cordless drill", 1, session="session-a")
    assert result.status == "reranked" and not result.interleaved
    assert {row.arm for row in result.reranked} == {"model"}
    ranks = [row.bm25_rank for row in result.reranked]
    assert ranks == sorted(ranks, reverse=True)


def test_simulated_shoppers_prefer_the_better_model_version(es, es_url, page_shop, reversed_reranker,
                                                            challenger_reranker, events_prefix) -> None:
    verdict, page = shoppers_verdict(es, es_url, page_shop, reversed_reranker.target, events_prefix, MODEL_ARMS,
                                     challenger=challenger_reranker.target)
    # the challenger ranks as BM25 did against the same reversed model above: the same margins
    assert verdict.losses > 3 * verdict.wins, verdict
    assert verdict.p_value < 1e-4 and verdict.high < 0, verdict
    assert "challenger" in page and f"<td>{verdict.losses}</td>" in page
    out = CliRunner().invoke(app, ["abtest", "report", "--es-url", es_url],
                             env={"SHOPSEARCH_WEB_EVENTS_INDEX_PREFIX": events_prefix, "COLUMNS": "200",
                                  "SHOPSEARCH_WEB_INTERLEAVE_TARGET": challenger_reranker.target})
    assert out.exit_code == 0, out.output
    assert f" model wins {verdict.wins:,} · ties {verdict.ties:,} · challenger wins {verdict.losses:,}" in out.output
    assert ": challenger is preferred" in out.output
