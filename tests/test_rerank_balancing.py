"""RerankClient over several replicas with gRPC's own machinery: a target naming them all,
round robin, client-side health checking (grpc.health.v1) and retries of UNAVAILABLE, set in the
channel's service config. Real in-process gRPC servers on port 0; the models are the BM25 floor
under distinct version names, so each answer says which replica scored it."""

from __future__ import annotations

import threading
import time
from collections import Counter

import pytest
from grpc_health.v1 import health_pb2

from reranker.client import Balancing, Candidate, RerankClient, RerankError, names_several, service_config
from reranker.rpc.stubs import RERANKER_SERVICE
from common.settings import RerankSettings
from reranker.server.app import RerankServer
from reranker.server.models import Bm25Order
from searchstack.settings import Settings

SENT = [Candidate("p1", 3.0, 1), Candidate("p2", 2.0, 2), Candidate("p3", 1.0, 3)]


class Replica(Bm25Order):
    def __init__(self, version: str) -> None:
        self.version = version


class NeverReady(Replica):
    """A replica still loading: its warm-up never ends, so it answers UNAVAILABLE to every call."""

    def __init__(self, version: str) -> None:
        super().__init__(version)
        self.gate = threading.Event()

    def warm_up(self) -> None:
        self.gate.wait(60)


def serve(model) -> RerankServer:
    srv = RerankServer(RerankSettings(port=0, grace_s=1.0, workers=8, metrics_port=None, reload_poll_s=0), model=model)
    srv.start()
    return srv


def several(*servers: RerankServer) -> str:
    return "ipv4:" + ",".join(s.target for s in servers)


def versions_of(client: RerankClient, n: int) -> Counter:
    return Counter(client.rerank("drill", SENT, timeout=5).model_version for _ in range(n))


def until(condition, timeout_s: float = 15.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


@pytest.fixture
def pair():
    a, b = serve(Replica("replica-a")), serve(Replica("replica-b"))
    a.wait_ready(10), b.wait_ready(10)
    yield a, b
    a.stop(0), b.stop(0)


def test_round_robin_spreads_calls_over_every_replica(pair) -> None:
    a, b = pair
    with RerankClient(several(a, b)) as client:
        client.wait_serving(10)
        until(lambda: len(versions_of(client, 4)) == 2)  # both subchannels connected
        seen = versions_of(client, 40)
    assert seen == {"replica-a": 20, "replica-b": 20}


def test_a_replica_reported_not_serving_leaves_the_rotation_and_comes_back(pair) -> None:
    a, b = pair
    with RerankClient(several(a, b)) as client:
        until(lambda: len(versions_of(client, 4)) == 2)
        a.health.set(RERANKER_SERVICE, health_pb2.HealthCheckResponse.NOT_SERVING)
        until(lambda: versions_of(client, 4) == {"replica-b": 4})
        assert versions_of(client, 30) == {"replica-b": 30}
        a.health.set(RERANKER_SERVICE, health_pb2.HealthCheckResponse.SERVING)
        until(lambda: "replica-a" in versions_of(client, 4))


def test_unavailable_is_retried_on_another_replica_within_the_deadline(pair) -> None:
    _, b = pair
    loading = serve(NeverReady("loading"))
    try:
        target = several(loading, b)
        # health checks off, so round robin sends every other call to the replica that is not ready
        with RerankClient(target, balancing=Balancing(health_check=False)) as client:
            assert versions_of(client, 30) == {"replica-b": 30}
        refused = loading.metrics.value("shopsearch_rerank_errors_total", {"code": "UNAVAILABLE"})
        assert refused >= 10, "the loading replica saw first tries, and each was retried elsewhere"
        # without retries, the same calls fail: the retry policy is what saved them
        with RerankClient(target, balancing=Balancing(health_check=False, retry_attempts=1)) as client:
            outcomes = Counter()
            for _ in range(20):
                try:
                    outcomes[client.rerank("drill", SENT, timeout=5).model_version] += 1
                except RerankError as err:
                    outcomes[err.code.name] += 1
        assert outcomes["UNAVAILABLE"] > 0 and outcomes["replica-b"] > 0
    finally:
        loading.stop(0)


def test_a_stopped_replica_loses_no_call(pair) -> None:
    a, b = pair
    failures: list[Exception] = []
    answers: list[str] = []
    stop = threading.Event()

    def hammer() -> None:
        with RerankClient(several(a, b)) as client:
            while not stop.is_set():
                try:
                    answers.append(client.rerank("drill", SENT, timeout=5).model_version)
                except RerankError as err:
                    failures.append(err)

    threads = [threading.Thread(target=hammer) for _ in range(4)]
    for t in threads:
        t.start()
    until(lambda: {"replica-a", "replica-b"} <= set(answers))
    # stopped as SIGTERM stops it: in-flight calls finish, new ones are refused and retried on b.
    # stop(0) cancels the calls in flight (CANCELLED, not retryable), lost on a busy machine.
    a.stop()
    seen = len(answers)
    until(lambda: len(answers) > seen + 200)
    stop.set()
    for t in threads:
        t.join(30)
    assert not failures, failures[:3]
    assert set(answers[-100:]) == {"replica-b"}


def test_a_dns_name_resolves_to_the_replicas(pair) -> None:
    a, _ = pair
    with RerankClient(f"dns:///localhost:{a.port}") as client:  # localhost: 127.0.0.1 (and ::1, unused)
        assert versions_of(client, 5) == {"replica-a": 5}


def test_the_service_config_is_grpcs_own_and_follows_the_settings(monkeypatch) -> None:
    assert names_several("ipv4:127.0.0.1:1,127.0.0.1:2") and names_several("dns:///reranker:50051")
    assert not names_several("127.0.0.1:50051")
    monkeypatch.setenv("SHOPSEARCH_RERANK_RETRY_ATTEMPTS", "4")
    balancing = Settings().rerank.balancing
    config = service_config(balancing, "ipv4:127.0.0.1:1,127.0.0.1:2")
    assert config["loadBalancingConfig"] == [{"round_robin": {}}]
    assert config["healthCheckConfig"] == {"serviceName": RERANKER_SERVICE}
    policy = config["methodConfig"][0]["retryPolicy"]
    assert policy["maxAttempts"] == 4 and policy["retryableStatusCodes"] == ["UNAVAILABLE"]
    # one address: no health checks, so a loading server's own reason reaches the caller
    assert "healthCheckConfig" not in service_config(balancing, "127.0.0.1:50051")
    with pytest.raises(ValueError):
        Settings(rerank_lb_policy="random")
