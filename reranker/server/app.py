"""Wires the reranker service: gRPC server, health, reflection, metrics, model loading and reload.

Start-up order: the port opens with health NOT_SERVING (so a prober gets an answer at once), the
model loads and runs one warm-up batch, then health turns SERVING. A missing or corrupt artifact
stops the server and `wait_ready` raises ServerStartError with a one-line reason. SIGTERM (`run_until_signal`)
turns health NOT_SERVING, refuses new calls and lets in-flight ones finish within the grace period.
"""

from __future__ import annotations

import atexit
import gc
import logging
import signal
import threading
import time
from concurrent import futures
from pathlib import Path

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from common.addresses import connectable
from common.errors import ShopsearchError
from common.settings import RerankSettings
from reranker.rpc.stubs import ADMIN_SERVICE, RERANKER_SERVICE, pb_grpc
from reranker.server.metrics import ServiceMetrics
from reranker.server.models import ArtifactError, ServingModel
from reranker.server.service import AdminServicer, RerankServicer
from reranker.server.slot import ArtifactWatcher, Loader, ModelSlot

# The interpreter's last collection skips frozen objects (see RerankServer._swapped). Unfrozen at
# exit they are freed as usual; left frozen, triton's bindings (imported by transformers through
# torch._dynamo) reported every still-alive function and type as "nanobind: leaked ...", a wall of
# text at the end of each test run and bench that read like a crash.
atexit.register(gc.unfreeze)

log = logging.getLogger(__name__)


class ServerStartError(ShopsearchError):
    """The service refuses to start: a missing or corrupt artifact, a port it cannot listen on.
    The message is one line."""


class RerankServer:
    """One service instance, configured by the settings' rerank group (`settings.rerank`). Give it a
    loader and an artifact path (BERM-O), or a ready model (`model=`: the teacher or the BM25 floor
    in benches, a tiny model in tests)."""

    def __init__(self, config: RerankSettings, loader: Loader | None = None, artifact: Path | None = None,
                 model: ServingModel | None = None) -> None:
        if (artifact is None) == (model is None):
            raise ValueError("give either an artifact to load or a model, not both or neither")
        self.config = config
        self.slot = ModelSlot(loader, artifact)
        self._initial_model = model
        self.metrics = ServiceMetrics()
        self.health = health.HealthServicer(experimental_non_blocking=True)
        self.port: int | None = None
        self.metrics_port: int | None = None
        self._server: grpc.Server | None = None
        self._watcher: ArtifactWatcher | None = None
        self._ready = threading.Event()
        self._load_error: ServerStartError | None = None
        self._loader_thread: threading.Thread | None = None
        self._swaps = 0
        self.slot.on_swap(self._swapped)

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self) -> int:
        """Open the port (health NOT_SERVING) and load the model in the background; returns the port."""
        cfg = self.config
        options = [("grpc.max_receive_message_length", cfg.max_message_bytes),
                   ("grpc.so_reuseport", 0)]  # port 0 must mean a port of our own
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=cfg.workers, thread_name_prefix="rerank"),
                             options=options, maximum_concurrent_rpcs=cfg.max_concurrent_rpcs)
        pb_grpc.add_RerankerServicer_to_server(
            RerankServicer(self.slot, self.metrics, cfg), server)
        pb_grpc.add_RerankerAdminServicer_to_server(AdminServicer(self.slot, self.metrics), server)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, server)
        for service in ("", RERANKER_SERVICE):
            self.health.set(service, health_pb2.HealthCheckResponse.NOT_SERVING)
        reflection.enable_server_reflection(
            (RERANKER_SERVICE, ADMIN_SERVICE, health.SERVICE_NAME, reflection.SERVICE_NAME), server)
        try:
            self.port = server.add_insecure_port(f"{cfg.host}:{cfg.port}")
        except RuntimeError:  # grpc's way of saying the bind failed
            self.port = 0
        if self.port == 0:
            raise ServerStartError(f"cannot listen on {cfg.host}:{cfg.port} (in use, or not an address of this machine)")
        server.start()
        self._server = server
        if cfg.metrics_port is not None:
            try:
                self.metrics_port = self.metrics.serve_http(cfg.host, cfg.metrics_port)
            except OSError as err:
                server.stop(0)
                raise ServerStartError(f"cannot serve metrics on {cfg.host}:{cfg.metrics_port} ({err.strerror or err})") from None
        self._loader_thread = threading.Thread(target=self._load_first, name="model-loader", daemon=True)
        self._loader_thread.start()
        log.info("reranker listening on %s:%d (metrics: %s)", cfg.host, self.port,
                 f"port {self.metrics_port}" if self.metrics_port else "off")
        return self.port

    def _load_first(self) -> None:
        try:
            if self._initial_model is not None:
                self.slot.install(self._initial_model)
            else:
                self.slot.load()
        except Exception as err:  # ArtifactError, or a model that fails its warm-up
            if isinstance(err, ArtifactError):
                reason = str(err).splitlines()[0] if str(err) else "missing or corrupt artifact"
            else:
                log.info("the model failed to load or warm up", exc_info=True)  # the caller reports the one line
                reason = f"the model failed to load or warm up ({type(err).__name__}: {err})".splitlines()[0]
            self._load_error = ServerStartError(reason)
            self._load_error.__cause__ = err
            log.info("refusing to serve: %s", reason)
            self._ready.set()
            return
        for service in ("", RERANKER_SERVICE):
            self.health.set(service, health_pb2.HealthCheckResponse.SERVING)
        if self.config.reload_poll_s > 0 and self.slot.path is not None:
            self._watcher = ArtifactWatcher(self.slot, self.config.reload_poll_s,
                                            on_error=lambda _: self.metrics.reloads.labels(result="failed").inc())
            self._watcher.start()
        self._ready.set()

    def wait_ready(self, timeout: float | None = None) -> "RerankServer":
        """Block until the model serves; raises ServerStartError (after stopping) when it could not load."""
        if not self._ready.wait(timeout):
            raise TimeoutError(f"the model was not ready within {timeout} s")
        if self._load_error is not None:
            self.stop(grace=0)
            raise self._load_error
        return self

    def stop(self, grace: float | None = None) -> None:
        """Health NOT_SERVING, no new calls, in-flight calls get `grace` seconds (default: config)."""
        if self._server is None:
            return
        self.health.enter_graceful_shutdown()
        if self._watcher is not None:
            self._watcher.stop()
        self._server.stop(self.config.grace_s if grace is None else grace).wait()
        self.metrics.stop_http()
        self._server = None

    def __enter__(self) -> "RerankServer":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop(grace=1)

    def _swapped(self, swap) -> None:
        # The model's objects (hundreds of thousands: item tables, graph dicts) leave the cyclic
        # garbage collector's view: a full collection scanned them all (130 ms on a tiny artifact)
        # in the middle of some request. They are freed by reference counting, as the model is
        # acyclic, when a reload replaces it and its last request ends.
        if not self._swaps:
            gc.collect()  # start-up garbage is not frozen
        gc.freeze()
        self.metrics.serving(swap.model.name, swap.model.version, getattr(swap.model, "trained_depth", None))
        if self._swaps:
            self.metrics.reloads.labels(result="ok").inc()
        self._swaps += 1

    @property
    def target(self) -> str:
        return f"{connectable(self.config.host)}:{self.port}"


def run_until_signal(server: RerankServer, on_ready=None) -> None:
    """Serve until SIGTERM or SIGINT, then stop gracefully. Must run in the main thread."""
    stop = threading.Event()
    received: list[str] = []

    def handle(signum, _frame) -> None:
        received.append(signal.Signals(signum).name)
        stop.set()

    previous = {sig: signal.signal(sig, handle) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        while not stop.is_set():  # a signal during loading stops at once
            try:
                server.wait_ready(0.25)
            except TimeoutError:
                continue
            if on_ready:
                on_ready(server)
            break
        while not stop.wait(0.5):
            pass
        began = time.perf_counter()
        log.warning("%s received: draining in-flight requests (up to %.0f s)", received[0], server.config.grace_s)
        server.stop()
        log.warning("stopped in %.1f s", time.perf_counter() - began)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
