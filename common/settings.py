"""The settings object's groups: the part of `searchstack.settings.Settings` that each room is handed.

Every default lives here or in `searchstack/settings.py` and nowhere else: a component takes its
group (`settings.rerank`, `settings.rerank.limits`, `settings.rerank.client`, `settings.web`) as
its configuration instead of copying fields out of the settings. The groups sit in `common/` so
the server, the client and the page can name their type without importing the program's settings
(searchstack imports them: that would be a cycle). Importing this costs pydantic only.

Environment variables and the TOML file keep their flat names: `SHOPSEARCH_RERANK_MAX_CANDIDATES`
(or `rerank_max_candidates = ...`) is `settings.rerank.limits.max_candidates`. A group lists
which of its flat keys belong to a sub-group (`_SUBGROUPS`); `fold` moves them there.

    settings.rerank          RerankSettings: the server's configuration (reranker/server/app.py)
    settings.rerank.limits   Limits: what one request may carry (reranker/server/validation.py)
    settings.rerank.onnx     OnnxThreads: every ONNX Runtime session (reranker/serving/onnx_runner.py)
    settings.rerank.balancing  Balancing: the client's channel over replicas (reranker/client.py)
    settings.rerank.deadlines  Deadlines: every hop's deadline to the service (page, plugin, client, server)
    settings.web             WebSettings: the search page (frontend/search.py)
    settings.web.events      EventSettings: behaviour logging and the event API (frontend/events.py)
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


def _default_rerank_workers() -> int:
    # Requests spend most of their time in ONNX Runtime, which releases the GIL: a few request
    # threads per core keep every core busy; more only queue inside the process.
    return min(32, max(8, 4 * (os.cpu_count() or 1)))


class Group(BaseModel):
    """A settings group: typed, unknown keys are errors, and its flat keys fold into sub-groups."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # sub-group field -> its flat keys and their names in the sub-group
    _SUBGROUPS: ClassVar[dict[str, dict[str, str]]] = {}

    @model_validator(mode="before")
    @classmethod
    def _fold(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        return fold(data, {group: lambda key, names=names: names.get(key) for group, names in cls._SUBGROUPS.items()})


def by_prefix(prefix: str):
    """A group's flat keys are those with `prefix`; the key in the group is the rest."""
    return lambda key: key[len(prefix):] if key.startswith(prefix) else None


def fold(data: dict, groups: dict) -> dict:
    """Move flat keys into their groups ({"rerank_port": 1} -> {"rerank": {"port": 1}}); `groups`
    maps each group to a function naming a flat key inside it (None: not this group's). A flat key
    wins over the same key given nested: flat keys come from the environment and the flags."""
    out = dict(data)
    for group, name_in in groups.items():
        taken = {name_in(key): out.pop(key) for key in list(out) if key != group and name_in(key)}
        if not taken:
            continue
        nested = out.get(group)
        nested = nested.model_dump(exclude_unset=True) if isinstance(nested, BaseModel) else dict(nested or {})
        out[group] = {**nested, **taken}
    return out


class Limits(Group):
    """What one Rerank request may carry (reranker/server/validation.py)."""

    max_candidates: int = Field(1000, ge=1)
    max_text_chars: int = Field(1000, ge=1)  # per candidate text
    max_query_chars: int = Field(512, ge=1)


class OnnxThreads(Group):
    """ONNX Runtime's thread counts for every session of an artifact (0 = ONNX Runtime's default,
    every core). 1: concurrent requests fill the cores, and a 100-candidate graph is too small to
    split (threads would only contend). Env: SHOPSEARCH_RERANK_ONNX_INTRA_THREADS, ..._INTER_THREADS."""

    intra_threads: int = Field(1, ge=0)
    inter_threads: int = Field(1, ge=0)


class Balancing(Group):
    """How the reranker client's channel spreads calls over replicas (rerank_target
    "ipv4:127.0.0.1:50071,127.0.0.1:50072" or "dns:///host:port"): gRPC's balancing, set in the
    channel's service config (reranker/client.py)."""

    lb_policy: str = Field("round_robin", pattern=r"^(round_robin|pick_first)$")
    # grpc.health.v1 per replica (env SHOPSEARCH_RERANK_CLIENT_HEALTH_CHECK). None: on when the
    # target may name several servers. One server alone is better called directly: its own answer
    # ("no model loaded yet") says more than "no healthy backend".
    health_check: bool | None = None
    retry_attempts: int = Field(3, ge=1, le=5)  # tries of a call answered UNAVAILABLE, the first included
    retry_backoff_ms: float = Field(20.0, gt=0)  # first pause between tries; doubled each time, at most 10x
    reconnect_backoff_ms: int = Field(1000, ge=100)  # a restarted replica is back within this


class Deadlines(Group):
    """Every caller's deadline for one Rerank call, in one place. Past it the caller keeps BM25 order
    (page, plugin) or gets DEADLINE_EXCEEDED (client). The two hops of a search: the page calling the
    service itself (web.rerank_path "service"), and the Elasticsearch node's plugin calling it from
    each shard (rerank_path "plugin"; handed to the node as shopsearch.rerank.deadline). Flat keys
    (env SHOPSEARCH_RERANK_<KEY>): page_deadline_ms, plugin_deadline_ms, client_timeout_ms,
    default_deadline_ms. The former SHOPSEARCH_WEB_RERANK_DEADLINE_MS and SHOPSEARCH_ES_RERANK_DEADLINE_MS
    still set page_ms and plugin_ms (searchstack/settings.py RENAMED)."""

    page_ms: float = Field(300.0, gt=0)  # the page -> service, within the page's budget_ms
    plugin_ms: float = Field(300.0, gt=0)  # plugin -> service, per shard: the call holds a search thread
    client_ms: float = Field(2000.0, gt=0)  # the client library's default (CLI, benches)
    server_default_ms: float = Field(1000.0, gt=0)  # what the server allows a request that carries none


class RerankSettings(Group):
    """The gRPC reranker service (reranker/server/: this group is the server's configuration) and
    its clients (env SHOPSEARCH_RERANK_*)."""

    _SUBGROUPS: ClassVar = {  # flat key (SHOPSEARCH_RERANK_<KEY>) -> its name in the sub-group
        "limits": {name: name for name in Limits.model_fields},
        "onnx": {"onnx_intra_threads": "intra_threads", "onnx_inter_threads": "inter_threads"},
        "balancing": {"lb_policy": "lb_policy", "client_health_check": "health_check",
                      "retry_attempts": "retry_attempts", "retry_backoff_ms": "retry_backoff_ms",
                      "reconnect_backoff_ms": "reconnect_backoff_ms"},
        "deadlines": {"page_deadline_ms": "page_ms", "plugin_deadline_ms": "plugin_ms",
                      "client_timeout_ms": "client_ms", "default_deadline_ms": "server_default_ms"},
    }

    artifact: Path | None = None  # the BERM-O artifact folder `shopsearch serve` loads
    host: str = "127.0.0.1"  # bind address; "[::]" to listen on every interface
    port: int = Field(50051, ge=0, le=65535)  # 0 = any free port (tests)
    target: str | None = None  # where clients call it; default host:port (Settings.resolved_rerank_target)
    workers: int = Field(default_factory=_default_rerank_workers, ge=1)  # request threads: 4 a core, 8..32
    max_concurrent_rpcs: int = Field(64, ge=1)  # beyond this, RESOURCE_EXHAUSTED at once
    metrics_port: int | None = Field(9464, ge=0, le=65535)  # Prometheus; None = off, 0 = any
    reload_poll_s: float = Field(2.0, ge=0)  # artifact file watch; 0 = reload only on request
    grace_s: float = Field(10.0, ge=0)  # SIGTERM: how long in-flight requests may finish
    # How many BM25 candidates the reranker sees: the one owner of that number. The page
    # (web.rerank_depth is filled from it), `shopsearch rerank`, `eval`, the demo, the load bench, and
    # the plugin node (shopsearch.rerank.max_window) read it. A model records the depth it was trained
    # for (manifest "trained_depth"); the service warns when a request sends more.
    depth: int = Field(100, ge=1, le=1000)
    # `shopsearch demo`: serve processes on port, port + 1, ... (metrics ports likewise); clients
    # then target all of them (Settings.resolved_rerank_target) and balance with gRPC's round robin.
    replicas: int = Field(1, ge=1, le=16)
    query_cache_size: int = Field(10_000, ge=1)  # query contexts kept (bi-encoder + neighbors)
    # items the artifact does not know, embedded from the text a request sent (bi-encoder +
    # neighbors), kept by (id, text): a product the model never saw costs one pass, not one a request
    item_cache_size: int = Field(50_000, ge=0)
    limits: Limits = Field(default_factory=Limits)
    onnx: OnnxThreads = Field(default_factory=OnnxThreads)
    balancing: Balancing = Field(default_factory=Balancing)
    deadlines: Deadlines = Field(default_factory=Deadlines)

    @property
    def max_message_bytes(self) -> int:
        # room for a full request of maximum-length texts (4 bytes a character at worst) plus framing
        return max(4 << 20, self.limits.max_candidates * (4 * self.limits.max_text_chars + 256))


class EventSettings(Group):
    """Behaviour logging from the page (frontend/events.py; env SHOPSEARCH_WEB_EVENTS_*): impressions
    and clicks written to Elasticsearch off the request path, and the event API's limits."""

    enabled: bool = False  # opt-in: nothing is logged unless a shop switches it on
    index_prefix: str = Field("shopsearch-events", pattern=r"^[a-z0-9][a-z0-9_-]*$")  # daily: PREFIX-YYYY.MM.DD
    queue_events: int = Field(10_000, ge=1)  # waiting to be written; past it, events are dropped and counted
    bulk_events: int = Field(500, ge=1)  # events a bulk request
    flush_ms: float = Field(250.0, gt=0)  # a partly filled bulk waits at most this
    write_timeout_ms: float = Field(2000.0, gt=0)  # one bulk request
    write_retries: int = Field(2, ge=0, le=5)  # a bulk that did not reach Elasticsearch is tried again
    max_batch: int = Field(100, ge=1)  # POST /api/events: events a request
    max_body_bytes: int = Field(256 * 1024, ge=1024)  # POST /api/events: request body
    rate_per_s: float = Field(50.0, gt=0)  # POST /api/events: requests a second, over all clients
    burst: int = Field(100, ge=1)  # POST /api/events: requests at once above the rate
    cookie: str = Field("shopsearch_session", pattern=r"^[A-Za-z0-9_]+$")  # the random session id


class WebSettings(Group):
    """The demo search page (frontend/, `shopsearch web`; env SHOPSEARCH_WEB_*)."""

    _SUBGROUPS: ClassVar = {"events": {f"events_{name}": name for name in EventSettings.model_fields}}

    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)
    page_size: int = Field(10, ge=1, le=100)
    # The page's copies of rerank.depth and rerank.deadlines.page_ms (Settings fills them from there;
    # set those, not these): BM25 top-N the reranker reorders, the rest follow; and the service's
    # deadline, past it, BM25 order. A page configured directly (tests) may set them.
    rerank_depth: int = Field(RerankSettings.model_fields["depth"].default, ge=1, le=1000)
    budget_ms: float = Field(1500.0, gt=0)  # a search answers within this, whatever ES or the reranker do
    es_timeout_ms: float = Field(1000.0, gt=0)  # at most this for Elasticsearch (within the budget)
    rerank_deadline_ms: float = Field(Deadlines.model_fields["page_ms"].default, gt=0)
    # Send titles, so items the model has not seen are embedded and scored from text (a bi-encoder
    # pass the first time the service meets an unknown item, then kept: rerank.item_cache_size), and
    # the quick artifact, which knows only what its queries retrieved, reranks every candidate. Off:
    # unknown items follow the reranked ones in BM25 order and the page says so.
    send_text: bool = True
    explain: bool = True  # ask for score parts and neighbors (the page's explain view)
    # How the page reranks: "service", its own gRPC call after the BM25 search; "plugin", one
    # `_search` with the shopsearch rescore clause (the node calls the service; no explain view).
    rerank_path: Literal["service", "plugin"] = "service"
    max_query_chars: int = Field(200, ge=1)
    max_page: int = Field(50, ge=1)
    examples: int = Field(6, ge=0)  # example queries shown, picked from the test split
    example_pool: int = Field(60, ge=0)  # test queries tried when picking them
    # Team-draft interleaving (evaluation/interleaving.py) of the served model's order with BM25's, for
    # this share of searches with a session (behaviour logging on); each item's arm is logged with it.
    interleave_share: float = Field(0.0, ge=0.0, le=1.0)
    # A second reranker service (host:port, `shopsearch serve --artifact B --port P`): interleaved
    # searches then draft the served model's order against this one's (arms "model" and "challenger"),
    # two model versions side by side, instead of against BM25's. Asked only for interleaved searches.
    interleave_target: str | None = None
    events: EventSettings = Field(default_factory=EventSettings)
