"""One typed settings object for the whole stack.

Sources, later ones winning: defaults, `shopsearch.toml` in the working directory (or the file
named by SHOPSEARCH_CONFIG), environment variables prefixed `SHOPSEARCH_`, then CLI flags.
Unknown keys in the file are errors, so a typo never silently falls back to a default.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from common.addresses import connectable

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def _default_rerank_workers() -> int:
    # Requests spend most of their time in ONNX Runtime, which releases the GIL: a few request
    # threads per core keep every core busy; more only queue inside the process.
    return min(32, max(8, 4 * (os.cpu_count() or 1)))


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SHOPSEARCH_", extra="forbid")

    # Elasticsearch node run from the project's own files (see es_config/local_node.py).
    es_version: str = "8.19.21"
    es_host: str = "127.0.0.1"
    es_port: int = Field(9200, ge=1, le=65535)
    es_heap: str = Field("1g", pattern=r"^\d+[mMgG]$")
    es_start_timeout_s: float = 120.0
    es_cache_dir: Path = PROJECT_ROOT / ".cache" / "elasticsearch"
    es_var_dir: Path = PROJECT_ROOT / "var"
    # The rescorer plugin (es_plugin/), built with Maven and installed into the local node, and its
    # node settings (elasticsearch.yml; a search cannot set them). The deadline is short because the
    # call holds one of the node's few search threads.
    es_plugin: bool = True
    es_rerank_target: str | None = None  # where the node calls the reranker; default: rerank_target
    es_rerank_deadline_ms: float = Field(300.0, gt=0)
    es_rerank_fail_on_error: bool = False  # True: a failed call fails the shard instead of keeping BM25 order
    es_rerank_max_window: int = Field(500, ge=1, le=1000)
    # Set to use an existing cluster instead of the local node (e.g. docker-compose's).
    es_url: str | None = None

    index_alias: str = "products"
    bulk_chunk_size: int = Field(1000, ge=1)
    # The indexing client: a bulk chunk of a large catalog can take long on a loaded node, and a
    # timed-out request is retried; rejected documents (HTTP 429) of a chunk are retried with backoff.
    es_request_timeout_s: float = Field(60.0, gt=0)
    es_request_retries: int = Field(2, ge=0)
    bulk_max_retries: int = Field(3, ge=0)

    artifacts_dir: Path = PROJECT_ROOT / "artifacts"
    home_depot_path: Path = PROJECT_ROOT.parent / "shared" / "data" / "home-depot" / "train.csv"
    wands_dir: Path = Path.home() / ".cache" / "shopsearch" / "wands"

    split_seed: int = 13
    split_dev_fraction: float = Field(0.1, ge=0.0, lt=1.0)
    split_test_fraction: float = Field(0.1, gt=0.0, lt=1.0)

    # The gRPC reranker service (reranker/server/) and its clients.
    rerank_artifact: Path | None = None  # the BERM-O artifact folder `shopsearch serve` loads
    rerank_host: str = "127.0.0.1"  # bind address; "[::]" to listen on every interface
    rerank_port: int = Field(50051, ge=0, le=65535)  # 0 = any free port (tests)
    rerank_target: str | None = None  # where clients call it; default rerank_host:rerank_port
    rerank_workers: int = Field(default_factory=_default_rerank_workers, ge=1)  # request threads: 4 a core, 8..32
    # Threads of each ONNX run (0 = ONNX Runtime's default, every core). 1: concurrent requests fill
    # the cores, and a 100-candidate graph is too small to split (threads would only contend).
    rerank_onnx_intra_threads: int = Field(1, ge=0)
    rerank_onnx_inter_threads: int = Field(1, ge=0)
    rerank_max_concurrent_rpcs: int = Field(64, ge=1)  # beyond this, RESOURCE_EXHAUSTED at once
    rerank_max_candidates: int = Field(1000, ge=1)
    rerank_max_text_chars: int = Field(1000, ge=1)  # per candidate text
    rerank_max_query_chars: int = Field(512, ge=1)
    rerank_default_deadline_ms: float = Field(1000.0, gt=0)  # for requests that carry no deadline
    rerank_client_timeout_ms: float = Field(2000.0, gt=0)  # the client library's default deadline
    # Clients over several replicas (rerank_target "ipv4:127.0.0.1:50071,127.0.0.1:50072" or
    # "dns:///host:port"): gRPC's balancing, set in the channel's service config (reranker/client.py).
    rerank_lb_policy: str = Field("round_robin", pattern=r"^(round_robin|pick_first)$")
    rerank_client_health_check: bool | None = None  # grpc.health.v1 per replica; None = when several
    rerank_retry_attempts: int = Field(3, ge=1, le=5)  # tries of a call answered UNAVAILABLE
    rerank_retry_backoff_ms: float = Field(20.0, gt=0)  # first pause between them
    rerank_reconnect_backoff_ms: int = Field(1000, ge=100)  # a restarted replica is back within this
    rerank_metrics_port: int | None = Field(9464, ge=0, le=65535)  # Prometheus; None = off, 0 = any
    rerank_reload_poll_s: float = Field(2.0, ge=0)  # artifact file watch; 0 = reload only on request
    rerank_grace_s: float = Field(10.0, ge=0)  # SIGTERM: how long in-flight requests may finish
    rerank_depth: int = Field(100, ge=1)  # `shopsearch rerank`: BM25 candidates sent
    # `shopsearch demo`: serve processes on rerank_port, rerank_port + 1, ... (metrics ports likewise);
    # clients then target all of them (resolved_rerank_target) and balance with gRPC's round robin.
    rerank_replicas: int = Field(1, ge=1, le=16)
    rerank_query_cache_size: int = Field(10_000, ge=1)  # query contexts kept (bi-encoder + neighbors)

    # The demo search page (frontend/, `shopsearch web`).
    web_host: str = "127.0.0.1"
    web_port: int = Field(8080, ge=0, le=65535)
    web_page_size: int = Field(10, ge=1, le=100)
    web_rerank_depth: int = Field(100, ge=1, le=1000)  # BM25 top-N the reranker reorders; the rest follow
    web_budget_ms: float = Field(1500.0, gt=0)  # a search answers within this, whatever ES or the reranker do
    web_es_timeout_ms: float = Field(1000.0, gt=0)  # at most this for Elasticsearch (within the budget)
    web_rerank_deadline_ms: float = Field(300.0, gt=0)  # the reranker's deadline; past it, BM25 order
    # Send titles, so items the model has not seen are embedded and scored from text (a bi-encoder
    # pass per unknown item and request: ~160 ms for 40 titles on one thread). Off: unknown items follow
    # the reranked ones in BM25 order and the page says so (an artifact of the full profile knows
    # every product; the quick one only those its queries retrieved).
    web_send_text: bool = False
    web_explain: bool = True  # ask for score parts and neighbors (the page's explain view)
    # How the page reranks: "service", its own gRPC call after the BM25 search; "plugin", one
    # `_search` with the shopsearch rescore clause (the node calls the service; no explain view).
    web_rerank_path: Literal["service", "plugin"] = "service"
    web_max_query_chars: int = Field(200, ge=1)
    web_max_page: int = Field(50, ge=1)
    web_examples: int = Field(6, ge=0)  # example queries shown, picked from the test split
    web_example_pool: int = Field(60, ge=0)  # test queries tried when picking them

    # `shopsearch demo` / `stop`: background processes, their pid files and logs.
    stack_dir: Path = PROJECT_ROOT / "var" / "stack"
    demo_profile: str = "quick"  # trained if no artifact is there yet
    demo_eval_depth: int = Field(100, ge=10)  # BM25 candidates per query in the demo's first BM25 figures
    demo_reranker_start_timeout_s: float = Field(300.0, gt=0)  # loading the model (and warm-up)
    demo_web_start_timeout_s: float = Field(180.0, gt=0)  # the page reads the catalog first

    @property
    def resolved_es_url(self) -> str:
        return self.es_url or f"http://{self.es_host}:{self.es_port}"

    @property
    def rerank_ports(self) -> list[int]:
        """The replicas' gRPC ports."""
        return [self.rerank_port + i for i in range(self.rerank_replicas)]

    @property
    def resolved_rerank_target(self) -> str:
        """rerank_target, else the local replicas: `host:port`, or gRPC's address list for several."""
        if self.rerank_target:
            return self.rerank_target
        host = connectable(self.rerank_host)
        if self.rerank_replicas == 1:
            return f"{host}:{self.rerank_port}"
        if ":" in host.strip("[]"):  # an IPv6 literal
            return "ipv6:" + ",".join(f"[{host.strip('[]')}]:{port}" for port in self.rerank_ports)
        if host.replace(".", "").isdigit():
            return "ipv4:" + ",".join(f"{host}:{port}" for port in self.rerank_ports)
        return f"dns:///{host}:{self.rerank_port}"  # a name: its addresses, one port (docker-compose)

    @property
    def web_url(self) -> str:
        return f"http://{connectable(self.web_host)}:{self.web_port}"

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        toml_file = Path(os.environ.get("SHOPSEARCH_CONFIG", "shopsearch.toml"))
        return (init_settings, env_settings, TomlConfigSettingsSource(settings_cls, toml_file))


def load_settings(**overrides: object) -> Settings:
    """Settings from file and environment, with CLI flags (non-None overrides) on top."""
    return Settings(**{k: v for k, v in overrides.items() if v is not None})
