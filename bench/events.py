"""What behaviour logging costs a search: the page's /api/search with logging off and on, in the same
run, requests alternating between the two (same process, same Elasticsearch, same queries).

    python -m bench events [--requests 400] [--alias products]

Both pages search BM25 only (no reranker), so the logging's cost is not hidden behind the model's.
The logging page writes its impressions to a throwaway events prefix, removed afterwards.
"""

from __future__ import annotations

import json
import time
import urllib.parse
import urllib.request
from dataclasses import asdict, dataclass

from bench.stats import Stats, stats
from common.settings import EventSettings, WebSettings
from frontend.app import BackgroundServer, create_app
from frontend.events import EventLog, new_id
from frontend.search import SearchService, make_es


@dataclass
class EventsBench:
    requests: int  # per mode
    off: Stats  # ms, logging off
    on: Stats  # ms, logging on
    written: int  # impressions the logging page wrote
    dropped: int

    @property
    def p50_ratio(self) -> float:
        return self.on.p50 / self.off.p50

    @property
    def p99_ratio(self) -> float:
        return self.on.p99 / self.off.p99


def queries_of(es, alias: str, n: int = 200) -> list[str]:
    """Two-word queries cut from the catalog's titles (any catalog works)."""
    hits = es.search(index=alias, query={"match_all": {}}, size=n, source=["title"])["hits"]["hits"]
    texts = [" ".join(h["_source"].get("title", "").split()[:2]) for h in hits]
    return [t for t in texts if t] or ["drill"]


def _get(url: str) -> float:
    began = time.perf_counter()
    with urllib.request.urlopen(url, timeout=30) as response:
        response.read()
    return 1000 * (time.perf_counter() - began)


def bench_events(es_url: str, alias: str, web: WebSettings, requests: int = 400) -> EventsBench:
    prefix = f"bench-events-{new_id().lower().replace('_', '').replace('-', '')[:8]}"
    events_config = EventSettings(enabled=True, index_prefix=prefix)
    service = SearchService(make_es(es_url, web.es_timeout_ms), None, web, es_url=es_url, alias=alias)
    queries = queries_of(service.es, alias)
    log = EventLog(make_es(es_url, events_config.write_timeout_ms), events_config).start()
    times: dict[str, list[float]] = {"off": [], "on": []}
    try:
        with BackgroundServer(create_app(service)) as off, BackgroundServer(create_app(service, events=log)) as on:
            for q in queries[:20]:  # warm both (connections, caches)
                for server in (off, on):
                    _get(f"{server.url}/api/search?q={urllib.parse.quote(q)}")
            for i in range(requests):
                q = urllib.parse.quote(queries[i % len(queries)])
                order = (("off", off), ("on", on)) if i % 2 == 0 else (("on", on), ("off", off))
                for mode, server in order:
                    times[mode].append(_get(f"{server.url}/api/search?q={q}"))
        log.stop()
    finally:
        for index in service.es.indices.get(index=f"{prefix}-*", allow_no_indices=True):
            service.es.indices.delete(index=index)
        service.es.options(ignore_status=404).indices.delete_index_template(name=prefix)
    counts = log.stats()
    return EventsBench(requests, stats(times["off"]), stats(times["on"]), counts["written"],
                       counts["dropped_full"] + counts["dropped_failed"])


def as_dict(result: EventsBench) -> dict:
    return {**asdict(result), "p50_ratio": result.p50_ratio, "p99_ratio": result.p99_ratio}


if __name__ == "__main__":
    import sys

    print(json.dumps(as_dict(bench_events(sys.argv[1], sys.argv[2], WebSettings())), indent=2))
