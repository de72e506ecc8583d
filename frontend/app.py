"""The demo page as a FastAPI app: server-rendered HTML, a JSON twin of each search, and a health probe.

    GET /?q=cordless+drill&page=2     the page: BM25 and reranked side by side
    GET /api/search?q=...&page=...    the same search as JSON (the load test and the bench use it);
                                      rerank=0: BM25 only; text=0|1: send titles or not
    GET /healthz                      200 while the page runs, with Elasticsearch's and the reranker's state
    GET /report, /compare             the latest pipeline run's evaluation (frontend/report_pages.py)

A bad query or page is a 400 with one line; Elasticsearch down is a 503 with one line; a bug is a
500 with one line (its traceback goes to the log). No stack trace reaches the user.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse
from jinja2 import Environment, FileSystemLoader, select_autoescape

from frontend.report_pages import report_router
from frontend.search import BadRequest, SearchService, SearchUnavailable, check_query, parse_page, pick_examples

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


def create_app(service: SearchService, examples: Examples | None = None, pipeline_dir: Path | None = None) -> FastAPI:
    """`pipeline_dir`: where the pipeline runs are, for /report and /compare (None: no such pages)."""
    app = FastAPI(title="shopsearch demo", docs_url=None, redoc_url=None, openapi_url=None)
    env = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(["html"]))
    env.globals.update(grade_class=grade_class, path_words=PATH_WORDS, path_label=path_label)
    page_template = env.get_template("page.html")
    examples = examples or Examples()
    app.state.service, app.state.examples = service, examples
    if pipeline_dir is not None:
        app.include_router(report_router(pipeline_dir, env))

    def render(status: int, **context) -> HTMLResponse:
        context = {"query": "", "result": None, "error": None, "examples": examples.queries, **context}
        return HTMLResponse(page_template.render(**context), status_code=status)

    def run(request: Request):
        """(result, status, error) for this request's q, page and rerank parameters."""
        params = request.query_params
        raw_query = params.get("q")
        try:
            page = parse_page(params.get("page"), service.config.max_page)
            query = check_query(raw_query, service.config.max_query_chars)
            rerank = params.get("rerank", "1") not in ("0", "false", "no")
            text = params.get("text")  # override the page's choice of sending titles (benches compare both)
            send_text = None if text is None else text not in ("0", "false", "no")
            return service.search(query, page, rerank=rerank, send_text=send_text), 200, None
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
        result, status, error = run(request)
        shown = (request.query_params.get("q") or "")[: service.config.max_query_chars]
        return render(status, query=result.query if result else shown, result=result, error=error)

    @app.get("/api/search")
    def api_search(request: Request) -> JSONResponse:
        result, status, error = run(request)
        if error is not None:
            return JSONResponse({"error": error}, status_code=status)
        return JSONResponse(result.to_dict())

    @app.get("/healthz")
    def healthz() -> JSONResponse:
        return JSONResponse({"page": "ok", **service.health(), "examples": len(examples.queries)})

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
