"""The demo page as a FastAPI app: server-rendered HTML, a JSON twin of each search, and a health probe.

    GET /?q=cordless+drill&page=2     the page: BM25 and reranked side by side
    GET /api/search?q=...&page=...    the same search as JSON (the load test and the bench use it);
                                      rerank=0: BM25 only; text=0|1: send titles or not
    GET /healthz                      200 while the page runs, with Elasticsearch's and the reranker's state
    GET /report, /compare             the latest pipeline run's evaluation (frontend/report_pages.py)
    GET /click?i=&p=&n=&a=&q=         a result link: logs the click, then leads to /product/ID
    POST /api/events                  a shop's own front end logs impressions and clicks (frontend/events.py)
    GET /metrics                      the event log's counters, in Prometheus' text format
    GET /abtest                       the interleaving's verdict from the logged clicks, with a chart

With behaviour logging on (settings.web.events.enabled) each search logs an impression of the
reranked column (its product ids, positions and arms, the model version, a random session id kept in
a cookie; no IP address) and each result link a click, off the request path (frontend/events.py).

A bad query or page is a 400 with one line; Elasticsearch down is a 503 with one line; a bug is a
500 with one line (its traceback goes to the log). No stack trace reaches the user.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from urllib.parse import quote

from elasticsearch import ApiError, TransportError
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader, select_autoescape
from pydantic import ValidationError

from es_config.events import read_events
from frontend.events import BadEvents, Click, EventLog, Impression, RateLimit, Shown, new_id, parse_batch, stored
from frontend.report_pages import report_router
from frontend.search import (BadRequest, SearchResult, SearchService, SearchUnavailable, check_query, parse_page,
                             pick_examples)

log = logging.getLogger(__name__)

TEMPLATES = Path(__file__).resolve().parent / "templates"
PATH_WORDS = {
    "Q-I": "clicked for this query",
    "Q-I-Q": "a query sharing clicks with this one",
    "I-Q": "a query this product was clicked for",
    "I-Q-I": "a product clicked for the same queries",
}


def path_label(result) -> str:
    """Which path gave the reranked column, in words."""
    if result.answered_by == "plugin":
        return "the shopsearch plugin inside Elasticsearch (one search with its rescore clause)"
    if result.answered_by == "service":
        return "the reranker service, called by this page after the BM25 search"
    if result.status == "fallback":
        return "BM25 alone (fallback: the " + ("plugin" if result.path == "plugin" else "reranker") + " did not rerank)"
    return "BM25 alone (not reranked)"


def grade_class(grade: float) -> str:
    return "g-high" if grade >= 1.5 else "g-mid" if grade >= 0.75 else "g-low"


class Examples:
    """Example queries for the page, picked in the background once the stack answers."""

    def __init__(self, service: SearchService | None = None, pool: list[str] | None = None, n: int = 6,
                 retry_s: float = 5.0, tries: int = 120, fixed: list[str] | None = None) -> None:
        self.service, self.pool, self.n = service, pool or [], n
        self.retry_s, self.tries = retry_s, tries
        self.queries: list[str] = list(fixed or [])
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> "Examples":
        if self.queries or not self.pool or self.n <= 0 or self.service is None:
            return self
        self._thread = threading.Thread(target=self._pick, name="examples", daemon=True)
        self._thread.start()
        return self

    def _pick(self) -> None:
        for _ in range(self.tries):
            try:
                picked = pick_examples(self.service, self.pool, self.n)
            except SearchUnavailable as err:
                log.info("examples wait for Elasticsearch: %s", err)
                picked = []
            except Exception:  # never let the helper thread die silently
                log.exception("picking example queries failed")
                return
            if picked:
                self.queries = picked
                log.info("example queries: %s", ", ".join(picked))
                return
            if self._stop.wait(self.retry_s):
                return

    def stop(self) -> None:
        self._stop.set()


def impression_of(result: SearchResult, session_id: str) -> Impression:
    """What this page of the reranked column showed, as an impression event."""
    return Impression(type="impression", event_id=new_id(), session_id=session_id, query=result.query,
                      items=[Shown(product_id=r.product_id, position=r.rank, arm=r.arm) for r in result.reranked],
                      model=result.model if result.status in ("reranked", "partial") else "",
                      interleaved=any(r.team for r in result.reranked))


def create_app(service: SearchService, examples: Examples | None = None, pipeline_dir: Path | None = None,
               events: EventLog | None = None) -> FastAPI:
    """`pipeline_dir`: where the pipeline runs are, for /report and /compare (None: no such pages);
    `events`: the behaviour log (None: logging off)."""
    app = FastAPI(title="shopsearch demo", docs_url=None, redoc_url=None, openapi_url=None)
    env = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(["html"]))
    env.globals.update(grade_class=grade_class, path_words=PATH_WORDS, path_label=path_label)
    page_template = env.get_template("page.html")
    product_template = env.get_template("product.html")
    abtest_template = env.get_template("abtest.html")
    examples = examples or Examples()
    app.state.service, app.state.examples, app.state.events = service, examples, events
    limits = service.config.events
    rate = RateLimit(limits.rate_per_s, limits.burst)
    if pipeline_dir is not None:
        app.include_router(report_router(pipeline_dir, env))

    def render(status: int, **context) -> HTMLResponse:
        context = {"query": "", "result": None, "error": None, "examples": examples.queries,
                   "impression_id": None, **context}
        return HTMLResponse(page_template.render(**context), status_code=status)

    def session_of(request: Request) -> tuple[str, bool]:
        """The random session id from the cookie, or a new one (True: set the cookie)."""
        known = request.cookies.get(limits.cookie, "")
        if 8 <= len(known) <= 64 and known.replace("-", "").replace("_", "").isalnum():
            return known, False
        return new_id(), True

    def search(request: Request) -> tuple[SearchResult | None, int, str | None, str | None, str | None]:
        """run() in this request's session, the impression logged: (result, status, error, impression
        id, a new session id to set in the cookie)."""
        if events is None:
            return *run(request), None, None
        session, new = session_of(request)
        result, status, error = run(request, session)
        if result is None:
            return result, status, error, None, None
        shown = impression_of(result, session)
        events.offer([stored(shown, "page")])
        return result, status, error, shown.event_id, session if new else None

    def with_session(response: Response, session: str | None) -> Response:
        if session is not None:
            response.set_cookie(limits.cookie, session, max_age=30 * 24 * 3600, httponly=True, samesite="lax")
        return response

    def run(request: Request, session: str | None = None):
        """(result, status, error) for this request's q, page and rerank parameters."""
        params = request.query_params
        raw_query = params.get("q")
        try:
            page = parse_page(params.get("page"), service.config.max_page)
            query = check_query(raw_query, service.config.max_query_chars)
            rerank = params.get("rerank", "1") not in ("0", "false", "no")
            text = params.get("text")  # override the page's choice of sending titles (benches compare both)
            send_text = None if text is None else text not in ("0", "false", "no")
            return service.search(query, page, rerank=rerank, send_text=send_text, session=session), 200, None
        except BadRequest as err:
            return None, 400, str(err)
        except SearchUnavailable as err:
            return None, 503, f"{err}. No results until it is back."
        except Exception as err:  # a bug: one line for the user, the traceback for the log
            log.exception("search failed for %r", raw_query)
            return None, 500, f"internal error while searching ({type(err).__name__}); see the page's log"

    @app.get("/", response_class=HTMLResponse)
    def page(request: Request) -> HTMLResponse:
        if not (request.query_params.get("q") or "").strip() and "page" not in request.query_params:
            return render(200)
        result, status, error, impression_id, session = search(request)
        shown = (request.query_params.get("q") or "")[: service.config.max_query_chars]
        return with_session(render(status, query=result.query if result else shown, result=result, error=error,
                                   impression_id=impression_id), session)

    @app.get("/api/search")
    def api_search(request: Request) -> JSONResponse:
        result, status, error, impression_id, session = search(request)
        if error is not None:
            return JSONResponse({"error": error}, status_code=status)
        return with_session(JSONResponse({**result.to_dict(), "impression_id": impression_id}), session)

    @app.get("/click")
    def click(request: Request) -> Response:
        """A result link: the click is logged (when logging is on), then the product's page."""
        params = request.query_params
        product_id = params.get("p", "")
        if events is not None:
            session, new = session_of(request)
            try:
                clicked = Click(type="click", event_id=new_id(), session_id=session, impression_id=params.get("i", ""),
                                query=params.get("q", ""), product_id=product_id, position=int(params.get("n", "")),
                                arm=params.get("a", ""))
            except (ValueError, ValidationError):
                return PlainTextResponse("a result link needs i (impression), p (product), n (position), a (arm) "
                                         "and q (query)", status_code=400)
            events.offer([stored(clicked, "page")])
            return with_session(RedirectResponse(f"/product/{quote(product_id, safe='')}", status_code=303),
                                session if new else None)
        return RedirectResponse(f"/product/{quote(product_id, safe='')}", status_code=303)

    @app.get("/product/{product_id}", response_class=HTMLResponse)
    def product(product_id: str) -> HTMLResponse:
        title = service.title_of(product_id)
        return HTMLResponse(product_template.render(product_id=product_id, title=title),
                            status_code=200 if title is not None else 404)

    @app.post("/api/events")
    async def api_events(request: Request) -> JSONResponse:
        """A shop's own front end logs events: all of a batch, or (400, one reason) none of it."""
        if events is None:
            return JSONResponse({"error": "behaviour logging is off (SHOPSEARCH_WEB_EVENTS_ENABLED)"}, status_code=404)
        if not rate.take():
            return JSONResponse({"error": f"more than {limits.rate_per_s:g} event requests a second; slow down"},
                                status_code=429)
        body = await request.body()
        if len(body) > limits.max_body_bytes:
            return JSONResponse({"error": f"the body has {len(body):,} bytes; the most a request takes is "
                                          f"{limits.max_body_bytes:,}"}, status_code=400)
        try:
            batch = parse_batch(body, limits.max_batch)
            ids = {e.product_id for e in batch if isinstance(e, Click)}
            ids |= {s.product_id for e in batch if isinstance(e, Impression) for s in e.items}
            unknown = sorted(ids - service.known_products(ids))
            if unknown:
                raise BadEvents(f"unknown product {unknown[0]!r}" + (f" (and {len(unknown) - 1} more)" if len(unknown) > 1 else ""))
        except BadEvents as err:
            return JSONResponse({"error": str(err)}, status_code=400)
        except SearchUnavailable as err:
            return JSONResponse({"error": f"{err}; nothing was logged"}, status_code=503)
        if not events.offer([stored(e, "api") for e in batch]):
            return JSONResponse({"error": "the event queue is full; nothing was logged, try again later"},
                                status_code=503)
        return JSONResponse({"accepted": len(batch)}, status_code=202)

    @app.get("/abtest", response_class=HTMLResponse)
    def abtest() -> HTMLResponse:
        """The interleaving's verdict from the logged events, with its chart."""
        from evaluation.charts import interleaving_chart  # matplotlib: loaded by the first request
        from evaluation.interleaving import arms_of, compare, outcomes_of

        ARMS = arms_of(service.challenger is not None)
        try:
            verdict = compare(outcomes_of(read_events(service.es, limits.index_prefix), ARMS), ARMS)
        except (ApiError, TransportError) as err:
            return HTMLResponse(abtest_template.render(arms=ARMS, error=f"the events cannot be read ({type(err).__name__})",
                                                       verdict=None), status_code=503)
        chart = interleaving_chart(ARMS, verdict.wins, verdict.ties, verdict.losses, verdict.preference,
                                   verdict.low, verdict.high) if verdict.impressions else ""
        return HTMLResponse(abtest_template.render(arms=ARMS, verdict=verdict, chart=chart, error=None))

    @app.get("/healthz")
    def healthz() -> JSONResponse:
        logging_state = events.stats() if events is not None else "off"
        return JSONResponse({"page": "ok", **service.health(), "examples": len(examples.queries),
                             "events": logging_state})

    @app.get("/metrics")
    def metrics() -> PlainTextResponse:
        lines = ["# HELP shopsearch_page_events_total Behaviour events by outcome (dropped: never written).",
                 "# TYPE shopsearch_page_events_total counter"]
        counts = events.stats() if events is not None else {}
        for outcome in ("accepted", "written", "duplicates", "dropped_full", "dropped_failed"):
            lines.append(f'shopsearch_page_events_total{{outcome="{outcome}"}} {counts.get(outcome, 0)}')
        lines += ["# TYPE shopsearch_page_events_queued gauge", f"shopsearch_page_events_queued {counts.get('queued', 0)}"]
        return PlainTextResponse("\n".join(lines) + "\n", media_type="text/plain; version=0.0.4")

    return app


class BackgroundServer:
    """The app served by uvicorn in a thread of this process (tests and benches); port 0 = any free one."""

    def __init__(self, app: FastAPI, host: str = "127.0.0.1", port: int = 0) -> None:
        import uvicorn

        self.server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False))
        self.host = host
        self.port = port
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self, timeout_s: float = 30.0) -> "BackgroundServer":
        import time

        self._thread = threading.Thread(target=self.server.run, name="web", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout_s
        while not self.server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the page did not start on {self.host}:{self.port}")
            time.sleep(0.02)
        self.port = self.server.servers[0].sockets[0].getsockname()[1]
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        if self._thread is not None:
            self._thread.join(10)

    def __enter__(self) -> "BackgroundServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
