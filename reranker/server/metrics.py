"""Prometheus metrics of the reranker service, on their own registry (one per server, so several
servers in one process, as in tests and benches, keep separate counts)."""

from __future__ import annotations

import logging

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest, start_http_server

log = logging.getLogger(__name__)

# Sub-millisecond resolution where the service should live, coarse where the teacher does.
LATENCY_BUCKETS_S = (0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
CANDIDATE_BUCKETS = (1, 10, 25, 50, 100, 200, 500, 1000, 2000)


class ServiceMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("shopsearch_rerank_requests", "Rerank requests received.", registry=self.registry)
        self.errors = Counter("shopsearch_rerank_errors", "Rerank requests answered with an error, by gRPC status code.",
                              ["code"], registry=self.registry)
        self.partial = Counter("shopsearch_rerank_partial", "Answers with status PARTIAL (some candidates unscored).",
                               registry=self.registry)
        self.latency = Histogram("shopsearch_rerank_latency_seconds", "Time in the Rerank handler, by outcome.",
                                 ["outcome"], buckets=LATENCY_BUCKETS_S, registry=self.registry)
        self.model_latency = Histogram("shopsearch_rerank_model_latency_seconds", "Time inside the model call.",
                                       buckets=LATENCY_BUCKETS_S, registry=self.registry)
        self.candidates = Histogram("shopsearch_rerank_candidates", "Candidates per valid request.",
                                    buckets=CANDIDATE_BUCKETS, registry=self.registry)
        self.model_info = Gauge("shopsearch_rerank_model_info", "The model being served (value 1).",
                                ["name", "version"], registry=self.registry)
        self.over_trained_depth = Counter(
            "shopsearch_rerank_over_trained_depth", "Requests with more candidates than the model was trained on "
            "(its manifest's trained_depth): scored, but past the depth it learned.", registry=self.registry)
        self.trained_depth = Gauge("shopsearch_rerank_model_trained_depth",
                                   "The BM25 depth the served model was trained on (0: not recorded).",
                                   registry=self.registry)
        self.reloads = Counter("shopsearch_rerank_reloads", "Model loads after the first, by result.",
                               ["result"], registry=self.registry)
        self._http = None

    def serving(self, name: str, version: str, trained_depth: int | None = None) -> None:
        self.model_info.clear()
        self.model_info.labels(name=name, version=version).set(1)
        self.trained_depth.set(trained_depth or 0)

    def text(self) -> str:
        """The exposition format, as Prometheus scrapes it."""
        return generate_latest(self.registry).decode()

    def value(self, name: str, labels: dict[str, str] | None = None) -> float:
        """One sample's value (0 when absent), e.g. value("shopsearch_rerank_errors_total", {"code": "INVALID_ARGUMENT"})."""
        return self.registry.get_sample_value(name, labels or {}) or 0.0

    def serve_http(self, host: str, port: int) -> int:
        """Start the /metrics endpoint; returns its port (useful with port 0)."""
        self._http, _ = start_http_server(port, addr=host, registry=self.registry)
        return self._http.server_port

    def stop_http(self) -> None:
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
            self._http = None
