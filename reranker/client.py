"""A small typed client of the reranker service (imports only grpc and the generated stubs).

    with RerankClient("127.0.0.1:50051") as client:
        result = client.rerank("cordless drill", [Candidate("p1", 12.3, 1), Candidate("p2", 11.0, 2)])
        for item in result.items:
            print(item.rank, item.product_id, item.score, item.movement)

Failures raise RerankError, whose message is one line: the target, the status code and the
server's reason.

Several replicas: give a target that names them all, `ipv4:127.0.0.1:50071,127.0.0.1:50072`, or a
DNS name that resolves to each (`dns:///reranker:50051` in docker-compose). The balancing is
gRPC's own, set in the channel's service config (`Balancing`, the settings' `rerank.balancing`
group): the `round_robin` policy spreads
calls over every connected replica; client-side health checking (grpc.health.v1, the Reranker
service's status) takes a replica that is loading or draining out of the rotation; a call that
gets UNAVAILABLE (a replica killed mid-call, or not ready) is retried on another within its
deadline; and reconnect backoff is capped, so a restarted replica rejoins within about a second.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from common.errors import ShopsearchError
from common.results import Candidate, Explanation, Neighbor, Ranked
from common.settings import Balancing, Deadlines
from reranker.rpc.stubs import RERANKER_SERVICE, pb, pb_grpc

__all__ = ["Balancing", "Candidate", "RerankClient", "RerankError", "RerankResult", "ReloadResult", "names_several"]

DEFAULT_TIMEOUT_S = Deadlines.model_fields["client_ms"].default / 1000  # the settings' default


def names_several(target: str) -> bool:
    """Whether a target may stand for more than one server: an address list or a DNS name."""
    return "," in target or target.startswith("dns:")


def service_config(balancing: Balancing, target: str) -> dict:
    """The channel's service config: gRPC's balancing policy, health checking and retries."""
    backoff = max(0.001, balancing.retry_backoff_ms / 1000)
    config: dict = {"loadBalancingConfig": [{balancing.lb_policy: {}}]}
    if balancing.health_check if balancing.health_check is not None else names_several(target):
        config["healthCheckConfig"] = {"serviceName": RERANKER_SERVICE}
    if balancing.retry_attempts > 1:
        config["methodConfig"] = [{
            "name": [{"service": RERANKER_SERVICE}],
            "retryPolicy": {"maxAttempts": min(5, balancing.retry_attempts), "initialBackoff": f"{backoff:.3f}s",
                            "maxBackoff": f"{10 * backoff:.3f}s", "backoffMultiplier": 2,
                            "retryableStatusCodes": ["UNAVAILABLE"]},
        }]
    return config


def channel_options(balancing: Balancing, target: str) -> list[tuple[str, object]]:
    return [
        ("grpc.service_config", json.dumps(service_config(balancing, target))),
        ("grpc.service_config_disable_resolution", 1),  # ours, never one from DNS TXT records
        ("grpc.enable_retries", 1),
        ("grpc.initial_reconnect_backoff_ms", min(100, balancing.reconnect_backoff_ms)),
        ("grpc.min_reconnect_backoff_ms", min(100, balancing.reconnect_backoff_ms)),
        ("grpc.max_reconnect_backoff_ms", balancing.reconnect_backoff_ms),
    ]


class CandidateLike(Protocol):
    product_id: str
    bm25: float
    bm25_rank: int
    text: str | None


# The shapes are common/results.py's; the older names stay for the client's users.
AttendedNeighbor = Neighbor
RankedItem = Ranked


@dataclass(frozen=True)
class RerankResult:
    items: list[Ranked]
    model_name: str
    model_version: str
    partial: bool
    reason: str  # why it is partial; "" otherwise
    timings_ms: dict[str, float] = field(default_factory=dict)  # server stages
    elapsed_ms: float = 0.0  # measured by the client, round trip included


@dataclass(frozen=True)
class ReloadResult:
    model_name: str
    model_version: str
    previous_version: str
    load_ms: float


class RerankError(ShopsearchError):
    """A call that failed; `code` is the gRPC status code, `details` the server's reason."""

    def __init__(self, target: str, code: grpc.StatusCode, details: str) -> None:
        self.target, self.code, self.details = target, code, details
        super().__init__(f"reranker at {target}: {code.name}: {details}")


def to_request(query: str, candidates: Iterable[CandidateLike], top_n: int | None = None, explain: bool = False,
               model_version: str | None = None) -> pb.RerankRequest:
    return pb.RerankRequest(
        query=query, top_n=top_n or 0, explain=explain, model_version=model_version or "",
        candidates=[pb.Candidate(item_id=c.product_id, bm25_score=c.bm25, bm25_rank=c.bm25_rank, text=c.text or "")
                    for c in candidates])


def from_response(response: pb.RerankResponse, elapsed_ms: float = 0.0) -> RerankResult:
    items = []
    for item in response.items:
        explanation = None
        if item.HasField("explanation"):
            e = item.explanation
            explanation = Explanation(e.zero_order, e.k_order, e.bm25_part,
                                      tuple(Neighbor(n.path, n.node_id, n.attention) for n in e.neighbors))
        items.append(Ranked(item.item_id, item.score, item.rank, item.bm25_score, item.bm25_rank,
                                item.reranked, explanation))
    return RerankResult(items, response.model_name, response.model_version, response.status == pb.PARTIAL,
                        response.status_reason, dict(response.timings_ms), elapsed_ms)


class RerankClient:
    def __init__(self, target: str, timeout_s: float = DEFAULT_TIMEOUT_S, balancing: Balancing | None = None) -> None:
        self.target = target
        self.timeout_s = timeout_s
        self.balancing = balancing or Balancing()
        self.channel = grpc.insecure_channel(target, options=channel_options(self.balancing, target))
        self._stub = pb_grpc.RerankerStub(self.channel)
        self._admin = pb_grpc.RerankerAdminStub(self.channel)
        self._health = health_pb2_grpc.HealthStub(self.channel)

    def rerank(self, query: str, candidates: Sequence[CandidateLike], top_n: int | None = None,
               explain: bool = False, model_version: str | None = None,
               timeout: float | None = None) -> RerankResult:
        """Reorder one query's BM25 candidates; `timeout` (seconds) is the call's deadline."""
        request = to_request(query, candidates, top_n, explain, model_version)
        began = time.perf_counter()
        try:
            response = self._stub.Rerank(request, timeout=self.timeout_s if timeout is None else timeout)
        except grpc.RpcError as err:
            raise self._error(err) from None
        return from_response(response, 1000 * (time.perf_counter() - began))

    def reload(self, artifact: str | None = None, timeout: float = 300.0) -> ReloadResult:
        """Ask the server to load an artifact folder (on the server; default: the one it serves)."""
        try:
            r = self._admin.Reload(pb.ReloadRequest(artifact=artifact or ""), timeout=timeout)
        except grpc.RpcError as err:
            raise self._error(err) from None
        return ReloadResult(r.model_name, r.model_version, r.previous_version, r.load_ms)

    def health(self, service: str = RERANKER_SERVICE, timeout: float = 2.0) -> str:
        """"SERVING", "NOT_SERVING", ...; raises RerankError when the server does not answer."""
        try:
            reply = self._health.Check(health_pb2.HealthCheckRequest(service=service), timeout=timeout)
        except grpc.RpcError as err:
            raise self._error(err) from None
        return health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)

    def wait_serving(self, timeout: float = 60.0) -> None:
        """Poll health until SERVING; raises RerankError with the last status after `timeout`."""
        deadline = time.monotonic() + timeout
        last = "no answer"
        while time.monotonic() < deadline:
            try:
                last = self.health(timeout=min(2.0, max(0.1, deadline - time.monotonic())))
                if last == "SERVING":
                    return
            except RerankError as err:
                last = err.code.name
            time.sleep(0.05)
        raise RerankError(self.target, grpc.StatusCode.UNAVAILABLE, f"not serving after {timeout:.0f} s ({last})")

    def _error(self, err: grpc.RpcError) -> RerankError:
        code = err.code() if hasattr(err, "code") else grpc.StatusCode.UNKNOWN
        details = (err.details() if hasattr(err, "details") else None) or str(err)
        if code is grpc.StatusCode.UNAVAILABLE and "failed to connect" in details.lower():
            details = "cannot connect (is `shopsearch serve` running there? set SHOPSEARCH_RERANK_TARGET)"
        return RerankError(self.target, code, details.splitlines()[0])

    def close(self) -> None:
        self.channel.close()

    def __enter__(self) -> "RerankClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
