"""Index settings and mappings for the product catalog (kept as JSON beside this file)."""

from __future__ import annotations

import copy
import hashlib
import json
from functools import lru_cache
from pathlib import Path

_INDEX_FILE = Path(__file__).resolve().parent / "products_index.json"


@lru_cache(maxsize=1)
def _load() -> dict:
    return json.loads(_INDEX_FILE.read_text())


# Changes with the mapping file, so an index built under an older mapping is recognisably stale.
MAPPING_VERSION = hashlib.sha256(_INDEX_FILE.read_bytes()).hexdigest()[:12]


def index_body(meta: dict | None = None) -> dict:
    """Settings and mappings for a new products index; `meta` lands in the mapping's `_meta`."""
    body = copy.deepcopy(_load())
    body["mappings"]["_meta"] = {"mapping_version": MAPPING_VERSION, **(meta or {})}
    return body
