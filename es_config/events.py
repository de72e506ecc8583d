"""The behaviour events' home in Elasticsearch: one index a day, `PREFIX-YYYY.MM.DD`, its mapping
(`events_index.json`, strict) installed as an index template, so `curl 127.0.0.1:9200/PREFIX-*/_search`
or Kibana reads them.

An event's `_id` is its `event_id` and it is written with op_type `create`: a bulk that is sent
again (a retry after a lost answer, a front end that posts twice) cannot count an event twice.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime
from functools import lru_cache
from pathlib import Path

from elasticsearch import Elasticsearch, helpers

_MAPPING_FILE = Path(__file__).resolve().parent / "events_index.json"


@lru_cache(maxsize=1)
def events_index_body() -> dict:
    return json.loads(_MAPPING_FILE.read_text())


def index_for(prefix: str, ts: datetime) -> str:
    """The day's index of an event stamped `ts` (UTC)."""
    return f"{prefix}-{ts:%Y.%m.%d}"


def install_template(es: Elasticsearch, prefix: str) -> None:
    """The mapping for every `PREFIX-*` index (put again at each start: it is idempotent)."""
    body = events_index_body()
    es.indices.put_index_template(name=prefix, index_patterns=[f"{prefix}-*"], priority=100,
                                  template={"settings": body["settings"], "mappings": body["mappings"]})


def read_events(es: Elasticsearch, prefix: str, batch: int = 1000) -> Iterator[dict]:
    """Every stored event (its `_source`), in no particular order; nothing when there are none."""
    es.indices.refresh(index=f"{prefix}-*", allow_no_indices=True)
    for hit in helpers.scan(es, index=f"{prefix}-*", query={"query": {"match_all": {}}}, size=batch,
                            allow_no_indices=True, ignore_unavailable=True):
        yield hit["_source"]
