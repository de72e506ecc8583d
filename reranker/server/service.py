"""The servicers: thin gRPC edges over validation, the model slot and the response builder.

Every failure leaves as a status code with a one-line message (INVALID_ARGUMENT for bad input,
DEADLINE_EXCEEDED, UNAVAILABLE before the model is ready, INTERNAL for a bug, with the traceback
in the server log only); the server keeps serving after each. Each request, good or bad, writes
one JSON log line and updates the metrics.
"""

from __future__ import annotations

import json
import logging
import math
import statistics
import threading
import time
from collections import deque
from pathlib import Path

import grpc

from common.errors import ShopsearchError
from common.results import Candidate, Reranking
from common.settings import RerankSettings
from reranker.rpc.stubs import pb, pb_grpc
from reranker.server.metrics import ServiceMetrics
from reranker.server.models import QUEUE, ArtifactError, ServingModel
from reranker.server.slot import ModelSlot
from reranker.server.validation import InvalidRequest, parse_request

log = logging.getLogger(__name__)
request_log = logging.getLogger("reranker.requests")  # one JSON line per request

NO_DEADLINE_S = 1e6  # grpc reports a call without a deadline as one centuries away
COST_SAMPLES = 16  # recent model calls per version behind the fail-fast estimate
PROBE_EVERY_S = 1.0  # while the estimate refuses requests, one a second is scored anyway
DEPTH_WARN_EVERY_S = 60.0  # one log line a model version and minute while requests send more than it learned


class Abort(ShopsearchError):
    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


class ModelContractError(ShopsearchError):
    """The model broke the protocol (a score missing, twice, or not a number): a bug, INTERNAL."""


def check_output(candidates: list[Candidate], output: Reranking) -> None:
    """Exactly one score per candidate, keyed by item id, or an explicit 'unscored'; ranks 1..n."""
    given = {c.product_id for c in candidates}
    scored_ids = [s.product_id for s in output.scored]
    if len(set(scored_ids)) != len(scored_ids):
        raise ModelContractError("the model scored an item twice")
    unknown = (set(scored_ids) | set(output.unscored)) - given
    if unknown:
        raise ModelContractError(f"the model returned {len(unknown)} item(s) it was not given")
    missing = given - set(scored_ids) - set(output.unscored)
    if missing or set(scored_ids) & set(output.unscored):
        raise ModelContractError("the model did not account for every candidate exactly once")
    bad = next((s.product_id for s in output.scored if not math.isfinite(s.score)), None)
    if bad is not None:
        raise ModelContractError(f"the model returned a non-finite score for {bad!r}")
    if sorted(s.rank for s in output.scored) != list(range(1, len(output.scored) + 1)):
        raise ModelContractError("the model's ranks are not 1..n")


def build_response(model: ServingModel, candidates: list[Candidate], output: Reranking, top_n: int,
                   explain: bool) -> pb.RerankResponse:
    """Scored items in the model's rank order (best first; ties: BM25 order), then unscored ones in
    BM25 order; `top_n` of them. The one place the served answer becomes a message."""
    by_id = {c.product_id: c for c in candidates}
    ranked = sorted(output.scored, key=lambda s: s.rank)
    tail = sorted((by_id[pid] for pid in output.unscored), key=lambda c: c.bm25_rank)
    response = pb.RerankResponse(model_name=model.name, model_version=model.version,
                                 status=pb.PARTIAL if tail else pb.RERANKED)
    if tail:
        response.status_reason = (
            f"{len(tail)} of {len(candidates)} candidates are unknown to model {model.version} and came "
            f"without text; they follow the reranked ones in BM25 order")
    limit = top_n or len(candidates)
    for s in ranked[:limit]:
        item = response.items.add(item_id=s.product_id, score=s.score, rank=s.rank, bm25_score=s.bm25,
                                  bm25_rank=s.bm25_rank, reranked=True)
        if explain and s.explanation is not None:
            e = s.explanation
            item.explanation.zero_order, item.explanation.k_order, item.explanation.bm25_part = \
                e.zero_order, e.k_order, e.bm25_part
            for n in e.neighbors:
                item.explanation.neighbors.add(path=n.path, node_id=str(n.node_id), attention=n.attention)
    for c in tail[: max(0, limit - len(response.items))]:
        response.items.add(item_id=c.product_id, score=0.0, rank=len(response.items) + 1, bm25_score=c.bm25,
                           bm25_rank=c.bm25_rank, reranked=False)
    return response


class CostEstimate:
    """What a model call of one version costs, per candidate, for the fail-fast guard.

    The median of the recent calls' ms per candidate, so one slow call (the first after start, a
    query seen for the first time) does not move it, and a request of few candidates is not judged
    by one of many. A guard fed only by the calls it lets through could lock itself out for good
    (an estimate above the deadline every client sends is never measured again): while it refuses,
    one request every PROBE_EVERY_S is scored anyway and corrects it.
    """

    def __init__(self) -> None:
        self._per_candidate: dict[str, deque[float]] = {}
        self._admitted: dict[str, float] = {}  # version -> when a request last went to the model
        self._lock = threading.Lock()

    def admit(self, version: str, candidates: int, left_ms: float) -> float | None:
        """None: score this request; else the ms it is expected to need (more than `left_ms`)."""
        now = time.monotonic()
        with self._lock:
            samples = self._per_candidate.get(version)
            expected_ms = statistics.median_low(samples) * candidates if samples else 0.0
            if expected_ms > left_ms and now - self._admitted.get(version, -math.inf) < PROBE_EVERY_S:
                return expected_ms
            self._admitted[version] = now
            return None

    def record(self, version: str, candidates: int, model_ms: float) -> None:
        with self._lock:
            samples = self._per_candidate.setdefault(version, deque(maxlen=COST_SAMPLES))
            samples.append(model_ms / max(1, candidates))


class RerankServicer(pb_grpc.RerankerServicer):
    def __init__(self, slot: ModelSlot, metrics: ServiceMetrics, options: RerankSettings) -> None:
        self.slot, self.metrics, self.options = slot, metrics, options
        self._cost = CostEstimate()
        self._depth_warned: dict[str, float] = {}  # version -> when its last depth warning was logged

    def Rerank(self, request, context):
        began = time.perf_counter()
        record = {"rpc": "Rerank", "peer": context.peer(), "candidates": len(request.candidates),
                  "explain": request.explain}
        self.metrics.requests.inc()
        try:
            response = self._rerank(request, context, began, record)
        except Abort as err:
            self._finish(record, err.code, began, err.message)
            context.abort(err.code, err.message)
        except Exception as err:  # a bug: the client gets a status, the log gets the traceback
            log.exception("Rerank failed")
            self._finish(record, grpc.StatusCode.INTERNAL, began, f"{type(err).__name__}: {err}")
            context.abort(grpc.StatusCode.INTERNAL, f"internal error while reranking ({type(err).__name__}); "
                                                    "see the server log")
        self._finish(record, grpc.StatusCode.OK, began)
        return response

    def _rerank(self, request, context, began: float, record: dict) -> pb.RerankResponse:
        model = self.slot.model  # this request's model, whatever a reload does meanwhile
        if model is None:
            raise Abort(grpc.StatusCode.UNAVAILABLE, "no model loaded yet; wait for health SERVING")
        record["model_version"] = model.version
        remaining = context.time_remaining()
        has_deadline = remaining is not None and remaining < NO_DEADLINE_S
        budget_ms = 1000 * remaining if has_deadline else self.options.deadlines.server_default_ms
        record["deadline_ms"] = round(budget_ms, 3)
        try:
            query, candidates = parse_request(request, self.options.limits)
            if request.model_version and request.model_version != model.version:
                raise InvalidRequest(f"unknown model version {request.model_version!r}; "
                                     f"this server runs {model.version!r}")
        except InvalidRequest as err:
            raise Abort(grpc.StatusCode.INVALID_ARGUMENT, str(err)) from None
        record["query"] = query[:200]
        self.metrics.candidates.observe(len(candidates))
        trained = getattr(model, "trained_depth", None)
        if trained and len(candidates) > trained:  # a warning, not a refusal: the model still scores them
            self._over_trained_depth(model.version, len(candidates), trained, record)
        validated = time.perf_counter()
        left_ms = budget_ms - 1000 * (validated - began)
        expected_ms = self._cost.admit(model.version, len(candidates), left_ms)
        if expected_ms is not None:  # fail fast instead of scoring for an answer nobody will read
            raise Abort(grpc.StatusCode.DEADLINE_EXCEEDED,
                        f"the deadline leaves {left_ms:.1f} ms; this model needs about {expected_ms:.1f} ms")

        output = model.rerank(query, candidates, explain=request.explain)
        scored = time.perf_counter()
        parts = dict(output.timings_ms)
        queue_ms = parts.pop(QUEUE, 0.0)
        model_ms = 1000 * (scored - validated) - queue_ms
        self.metrics.model_latency.observe(model_ms / 1000)
        self._cost.record(model.version, len(candidates), model_ms)
        record["model_ms"] = round(model_ms, 3)
        if queue_ms:
            record["queue_ms"] = round(queue_ms, 3)
        if 1000 * (scored - began) > budget_ms:
            raise Abort(grpc.StatusCode.DEADLINE_EXCEEDED,
                        f"the deadline of {budget_ms:.1f} ms passed while scoring ({model_ms:.1f} ms in the model)")
        try:
            check_output(candidates, output)
        except ModelContractError as err:
            raise Abort(grpc.StatusCode.INTERNAL, f"model {model.version}: {err}") from None

        response = build_response(model, candidates, output, request.top_n, request.explain)
        done = time.perf_counter()
        timings = {"validate": 1000 * (validated - began), "queue": queue_ms, "model": model_ms}
        timings.update({f"model.{part}": float(ms) for part, ms in parts.items()})
        timings.update({"respond": 1000 * (done - scored), "server": 1000 * (time.perf_counter() - began)})
        response.timings_ms.update(timings)
        record["status"] = "partial" if response.status == pb.PARTIAL else "reranked"
        record["returned"] = len(response.items)
        if response.status == pb.PARTIAL:
            self.metrics.partial.inc()
        return response

    def _over_trained_depth(self, version: str, sent: int, trained: int, record: dict) -> None:
        self.metrics.over_trained_depth.inc()
        record["over_trained_depth"] = trained
        now = time.monotonic()
        if now - self._depth_warned.get(version, -math.inf) >= DEPTH_WARN_EVERY_S:
            self._depth_warned[version] = now
            log.warning("a request sent %d candidates; model %s was trained on the BM25 top %d "
                        "(set rerank_depth to %d or less; counted in shopsearch_rerank_over_trained_depth_total)",
                        sent, version, trained, trained)

    def _finish(self, record: dict, code: grpc.StatusCode, began: float, message: str | None = None) -> None:
        seconds = time.perf_counter() - began
        self.metrics.latency.labels(outcome="ok" if code is grpc.StatusCode.OK else "error").observe(seconds)
        if code is not grpc.StatusCode.OK:
            self.metrics.errors.labels(code=code.name).inc()
        record.update(code=code.name, ms=round(1000 * seconds, 3))
        if message:
            record["error"] = message
        if request_log.isEnabledFor(logging.INFO):
            request_log.info(json.dumps(record, ensure_ascii=False))


class AdminServicer(pb_grpc.RerankerAdminServicer):
    def __init__(self, slot: ModelSlot, metrics: ServiceMetrics) -> None:
        self.slot, self.metrics = slot, metrics

    def Reload(self, request, context):
        previous = self.slot.model
        try:
            swap = self.slot.load(Path(request.artifact) if request.artifact else None)
        except ArtifactError as err:
            self.metrics.reloads.labels(result="failed").inc()
            log.error("reload refused, still serving %s: %s", previous.version if previous else "nothing", err)
            context.abort(grpc.StatusCode.FAILED_PRECONDITION, str(err).splitlines()[0])
        return pb.ReloadResponse(model_name=swap.model.name, model_version=swap.model.version,
                                 previous_version=previous.version if previous else "", load_ms=swap.load_ms)
