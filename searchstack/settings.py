"""One typed settings object for the whole stack.

Sources, later ones winning: defaults, `shopsearch.toml` in the working directory (or the file
named by SHOPSEARCH_CONFIG), environment variables prefixed `SHOPSEARCH_`, then CLI flags.
Unknown keys in the file are errors, so a typo never silently falls back to a default.
"""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import Field
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

PROJECT_ROOT = Path(__file__).resolve().parent.parent


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
    # Set to use an existing cluster instead of the local node (e.g. docker-compose's).
    es_url: str | None = None

    index_alias: str = "products"
    bulk_chunk_size: int = Field(1000, ge=1)

    artifacts_dir: Path = PROJECT_ROOT / "artifacts"
    home_depot_path: Path = PROJECT_ROOT.parent / "shared" / "data" / "home-depot" / "train.csv"
    wands_dir: Path = Path.home() / ".cache" / "shopsearch" / "wands"

    split_seed: int = 13
    split_dev_fraction: float = Field(0.1, ge=0.0, lt=1.0)
    split_test_fraction: float = Field(0.1, gt=0.0, lt=1.0)

    @property
    def resolved_es_url(self) -> str:
        return self.es_url or f"http://{self.es_host}:{self.es_port}"

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
