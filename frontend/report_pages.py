"""The evaluation on the page: the latest pipeline run's report and the query-by-query comparison.

    GET /report                          the newest run's report (evaluation/html_report.py), rebuilt
                                         when its eval.json is newer than the file
    GET /favicon.ico                     204 (no icon, so browsers log no 404)
    GET /compare?only=losses&order=worst the test queries by the served model's NDCG@10 change against
                                         BM25, each linking to the side-by-side search

No run yet, or one the report cannot read, is a 404 page with one line saying what to run.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from jinja2 import Environment

from evaluation.comparison import TIE_EPS

log = logging.getLogger(__name__)


def report_router(pipeline_dir: Path, env: Environment) -> APIRouter:
    # the report module draws with matplotlib: imported by the first request, not at the page's start
    router = APIRouter()
    template = env.get_template("compare.html")
    lock = threading.Lock()  # one build at a time; the others wait and serve its file

    def missing(error: Exception) -> HTMLResponse:
        return HTMLResponse(template.render(error=str(error), rows=[], counts=None), status_code=404)

    @router.get("/favicon.ico", include_in_schema=False)
    def favicon() -> Response:
        return Response(status_code=204)  # no icon; without this every page logs a 404 in the console

    @router.get("/report", response_class=HTMLResponse)
    def report() -> HTMLResponse:
        from evaluation.html_report import ReportError, current_report, resolve_run

        try:
            run = resolve_run(None, pipeline_dir)
            with lock:
                path = current_report(run)
            return HTMLResponse(path.read_text())
        except ReportError as err:
            return missing(err)

    @router.get("/compare", response_class=HTMLResponse)
    def compare(request: Request) -> HTMLResponse:
        from evaluation.html_report import BASELINE, ReportError, load_eval, query_changes, resolve_run, served_name

        params = request.query_params
        try:
            run = resolve_run(None, pipeline_dir)
            data = load_eval(run)
            changes = query_changes(data)
        except ReportError as err:
            return missing(err)
        counts = {"wins": sum(c.change > TIE_EPS for c in changes), "losses": sum(c.change < -TIE_EPS for c in changes)}
        counts["ties"] = len(changes) - counts["wins"] - counts["losses"]
        only_losses = params.get("only") == "losses"
        worst_first = params.get("order") == "worst"
        rows = [c for c in changes if c.change < -TIE_EPS] if only_losses else changes
        if worst_first or only_losses:
            rows = list(reversed(rows))
        return HTMLResponse(template.render(
            error=None, rows=rows, counts=counts, model=served_name(data), baseline=BASELINE, run=run.name,
            split_id=data.get("split", {}).get("split_id"), only_losses=only_losses, worst_first=worst_first or only_losses))

    return router
