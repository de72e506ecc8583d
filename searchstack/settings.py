"""One typed settings object for the whole stack.

Sources, later ones winning: defaults, `shopsearch.toml` in the working directory (or the file
named by SHOPSEARCH_CONFIG), environment variables prefixed `SHOPSEARCH_`, then CLI flags.
Unknown keys in the file are errors, so a typo never silently falls back to a default.

The reranker's and the page's settings are groups (`settings.rerank`, `settings.web`, defined in
common/settings.py) that the server, the client and the page take as they are; their keys keep
their flat names everywhere: SHOPSEARCH_RERANK_PORT, `rerank_port = ...` in the file, and
`load_settings(rerank_port=...)` all set `settings.rerank.port`.

One number has one owner: how many candidates the reranker sees is `rerank.depth`, every deadline
of a Rerank call is in `rerank.deadlines`; the page's group carries copies filled from them, and
the plugin node is handed them (es_config/local_node.py plugin_node_settings). The keys they had
before still work (RENAMED).
"""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import Field, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from common.addresses import connectable
from common.settings import RerankSettings, WebSettings, by_prefix, fold

PROJECT_ROOT = Path(__file__).resolve().parent.parent
GROUPS = {"rerank": by_prefix("rerank_"), "web": by_prefix("web_")}  # group -> its flat keys
# Former keys -> the rerank group's flat key that owns the value now: (group or None, key) -> key.
RENAMED = {("web", "rerank_depth"): "depth", ("web", "rerank_deadline_ms"): "page_deadline_ms",
           (None, "es_rerank_deadline_ms"): "plugin_deadline_ms"}
_NESTED = {"page_deadline_ms": ("deadlines", "page_ms"), "plugin_deadline_ms": ("deadlines", "plugin_ms")}


def _as_dict(value: object) -> dict:
    return value.model_dump(exclude_unset=True) if hasattr(value, "model_dump") else dict(value or {})


def take_renamed(data: dict) -> dict:
    """Move values given under a former key (SHOPSEARCH_WEB_RERANK_DEPTH, ...) to their owner in the
    rerank group; the same value given under both names is fine, two different ones are an error."""
    out = dict(data)
    for (group, old), new in RENAMED.items():
        source = _as_dict(out.get(group)) if group else out
        if old not in source:
            continue
        value = source.pop(old)
        if group:
            out[group] = source
        rerank = _as_dict(out.get("rerank"))
        sub, key = _NESTED.get(new, (None, new))
        given = rerank.get(new, _as_dict(rerank.get(sub)).get(key) if sub else None)
        name = f"{group}_{old}" if group else old
        if given is not None and float(given) != float(value):
            raise ValueError(f"{name} is the former name of rerank_{new}, and the two differ "
                             f"({value} and {given}); set rerank_{new} only")
        rerank[new] = value
        out["rerank"] = rerank
    return out


class _FlatToml(TomlConfigSettingsSource):
    """The TOML file with flat group keys (`rerank_port = 50051`) folded into their groups, so the
    environment still wins over the file key by key."""

    def __call__(self) -> dict:
        return fold(super().__call__(), GROUPS)


class Settings(BaseSettings):
    # SHOPSEARCH_RERANK_MAX_CANDIDATES -> rerank.max_candidates (split once, after the group's
    # name); the group then folds it into rerank.limits.
    model_config = SettingsConfigDict(env_prefix="SHOPSEARCH_", extra="forbid", env_nested_delimiter="_",
                                      env_nested_max_split=1)

    @model_validator(mode="before")
    @classmethod
    def _fold_flat_keys(cls, data: object) -> object:
        # flat keys left here came as arguments (CLI flags): they win over the same key from a source
        return take_renamed(fold(data, GROUPS)) if isinstance(data, dict) else data

    @model_validator(mode="after")
    def _hand_copies_to_the_page(self) -> "Settings":
        # the page is handed its group alone: it gets the owners' values, never defaults of its own
        self.web = self.web.model_copy(update={"rerank_depth": self.rerank.depth,
                                               "rerank_deadline_ms": self.rerank.deadlines.page_ms})
        return self

    # Elasticsearch node run from the project's own files (see es_config/local_node.py).
    es_version: str = "8.19.21"
    es_host: str = "127.0.0.1"
    es_port: int = Field(9200, ge=1, le=65535)
    es_heap: str = Field("1g", pattern=r"^\d+[mMgG]$")
    es_start_timeout_s: float = 120.0
    es_cache_dir: Path = PROJECT_ROOT / ".cache" / "elasticsearch"
    es_var_dir: Path = PROJECT_ROOT / "var"
    # The rescorer plugin (es_plugin/), built with Maven and installed into the local node. Its node
    # settings (elasticsearch.yml; a search cannot set them) all come from here: the deadline is
    # rerank.deadlines.plugin_ms, the largest window rerank.depth, retries rerank.balancing's, the
    # longest text rerank.limits.max_text_chars (es_config/local_node.py plugin_node_settings).
    es_plugin: bool = True
    es_rerank_target: str | None = None  # where the node calls the reranker; default: rerank_target
    es_rerank_fail_on_error: bool = False  # True: a failed call fails the shard instead of keeping BM25 order
    es_rerank_deadline_ms: float | None = Field(None, gt=0)  # former name of rerank_plugin_deadline_ms (RENAMED)
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

    # The gRPC reranker service and its clients (SHOPSEARCH_RERANK_*), the demo search page
    # (SHOPSEARCH_WEB_*): groups, each handed as it is to the part it configures (common/settings.py).
    rerank: RerankSettings = Field(default_factory=RerankSettings)
    web: WebSettings = Field(default_factory=WebSettings)

    # `shopsearch demo` / `stop`: background processes, their pid files and logs.
    stack_dir: Path = PROJECT_ROOT / "var" / "stack"
    demo_profile: str = "quick"  # trained if no artifact is there yet
    # `demo --upgrade` / `upgrade`: trained in the background, rolled in when better on dev
    upgrade_profile: str = "full"
    upgrade_pause_s: float = Field(1.0, ge=0)  # between replicas in the rolling reload
    demo_reranker_start_timeout_s: float = Field(300.0, gt=0)  # loading the model (and warm-up)
    demo_web_start_timeout_s: float = Field(180.0, gt=0)  # the page reads the catalog first

    @property
    def resolved_es_url(self) -> str:
        return self.es_url or f"http://{self.es_host}:{self.es_port}"

    @property
    def rerank_ports(self) -> list[int]:
        """The replicas' gRPC ports."""
        return [self.rerank.port + i for i in range(self.rerank.replicas)]

    @property
    def resolved_rerank_target(self) -> str:
        """rerank.target, else the local replicas: `host:port`, or gRPC's address list for several."""
        if self.rerank.target:
            return self.rerank.target
        host = connectable(self.rerank.host)
        if self.rerank.replicas == 1:
            return f"{host}:{self.rerank.port}"
        if ":" in host.strip("[]"):  # an IPv6 literal
            return "ipv6:" + ",".join(f"[{host.strip('[]')}]:{port}" for port in self.rerank_ports)
        if host.replace(".", "").isdigit():
            return "ipv4:" + ",".join(f"{host}:{port}" for port in self.rerank_ports)
        return f"dns:///{host}:{self.rerank.port}"  # a name: its addresses, one port (docker-compose)

    @property
    def web_url(self) -> str:
        return f"http://{connectable(self.web.host)}:{self.web.port}"

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
        return (init_settings, env_settings, _FlatToml(settings_cls, toml_file))


def load_settings(**overrides: object) -> Settings:
    """Settings from file and environment, with CLI flags (non-None overrides) on top."""
    return Settings(**{k: v for k, v in overrides.items() if v is not None})
