"""Behaviour logging: what a search showed (an impression) and what was clicked, written to
Elasticsearch (es_config/events.py) off the request path.

    log = EventLog(es, settings.web.events).start()
    log.offer([impression(...)])     # all of the list or none of it; never blocks, never raises
    log.stats()                      # accepted, written, duplicates, dropped_full, dropped_failed, queued

A search only appends to a bounded in-memory queue; one background thread writes what waits with
bulk requests (elasticsearch-py's helpers). A full queue, Elasticsearch down, or an events index it
will not write (read-only, blocked) drops the events and counts them; a search neither waits nor
fails for it. Each event carries an id, used as the document's `_id` with op_type `create`, so a
retried bulk cannot count an event twice (the second copy is counted as a duplicate).

What is stored: the query as typed, the shown product ids with their positions and the arm (the
ranker) that placed each, the model version, a random session id from a cookie, and a server
timestamp. No IP address, no user agent.

The event API's models (`EventBatch`) forbid unknown fields and take no type coercion: a shop's
front end gets a 400 with one reason for a bad event, and nothing of that batch is written.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections import deque
from datetime import datetime, timezone
from typing import Annotated, Literal, Union

from elasticsearch import ApiError, Elasticsearch, TransportError, helpers
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from common.errors import ShopsearchError
from common.settings import EventSettings
from es_config.events import index_for, install_template

__all__ = ["BadEvents", "Click", "EventBatch", "EventLog", "Impression", "RateLimit", "Shown", "new_id",
           "parse_batch"]

log = logging.getLogger(__name__)

Id = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{8,64}$")]
ProductId = Annotated[str, StringConstraints(min_length=1, max_length=200)]
Text = Annotated[str, StringConstraints(max_length=512)]
Arm = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.:-]{1,64}$")]


def new_id() -> str:
    """A random event or session id (128 bits)."""
    return secrets.token_urlsafe(16)


class BadEvents(ShopsearchError, ValueError):
    """A batch of events the API does not take; the message is one line, for the caller."""


class _Event(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class Shown(_Event):
    product_id: ProductId
    position: int = Field(ge=1, le=10_000)  # 1-based, over the whole result list (page 2 starts at 11)
    arm: Arm  # the ranker that placed it ("model", "bm25"; an interleaving's team)


class Impression(_Event):
    type: Literal["impression"]
    event_id: Id  # also the impression's id, which its clicks name
    session_id: Id
    query: Text
    items: list[Shown] = Field(max_length=1000)
    model: Text = ""  # the model version behind the list ("" for BM25 alone)
    interleaved: bool = False


class Click(_Event):
    type: Literal["click"]
    event_id: Id
    session_id: Id
    impression_id: Id
    query: Text
    product_id: ProductId
    position: int = Field(ge=1, le=10_000)
    arm: Arm


Event = Annotated[Union[Impression, Click], Field(discriminator="type")]


class EventBatch(_Event):
    events: list[Event]


def parse_batch(body: bytes, max_batch: int) -> list[Impression | Click]:
    """The events of one API request, or BadEvents with the first reason found."""
    try:
        batch = EventBatch.model_validate_json(body)
    except ValidationError as err:
        first = err.errors(include_url=False)[0]
        where = ".".join(str(part) for part in first["loc"] if part not in ("impression", "click"))
        raise BadEvents(f"{where or 'body'}: {first['msg']}") from None
    if not batch.events:
        raise BadEvents("events: the batch is empty")
    if len(batch.events) > max_batch:
        raise BadEvents(f"events: the batch has {len(batch.events)} events; the most a request takes is {max_batch}")
    return batch.events


def stored(event: Impression | Click, source: str, now: datetime | None = None) -> dict:
    """An event as the document written (server timestamp, where it came from)."""
    doc = event.model_dump()
    if isinstance(event, Impression):
        doc["impression_id"] = event.event_id
    return {**doc, "ts": (now or datetime.now(timezone.utc)).isoformat(), "source": source}


class RateLimit:
    """A token bucket over all callers (no per-client state: the page keeps no addresses)."""

    def __init__(self, rate_per_s: float, burst: int) -> None:
        self.rate, self.burst = rate_per_s, burst
        self._tokens, self._at = float(burst), time.monotonic()
        self._lock = threading.Lock()

    def take(self) -> bool:
        with self._lock:
            now = time.monotonic()
            self._tokens = min(self.burst, self._tokens + (now - self._at) * self.rate)
            self._at = now
            if self._tokens < 1:
                return False
            self._tokens -= 1
            return True


class EventLog:
    """The bounded queue and its one writer thread (see the module's docstring)."""

    def __init__(self, es: Elasticsearch, config: EventSettings) -> None:
        self.config = config
        self._es = es.options(request_timeout=config.write_timeout_ms / 1000, max_retries=0)
        self._queue: deque[dict] = deque()
        self._cond = threading.Condition()
        self._writing = 0  # events taken from the queue, not yet settled
        self._counts = dict.fromkeys(("accepted", "written", "duplicates", "dropped_full", "dropped_failed"), 0)
        self._template = False
        self._stop = False
        self._thread: threading.Thread | None = None

    def start(self) -> "EventLog":
        self._thread = threading.Thread(target=self._run, name="events", daemon=True)
        self._thread.start()
        return self

    def offer(self, docs: list[dict]) -> bool:
        """Queue all of `docs`, or none when they do not fit (counted as dropped_full)."""
        with self._cond:
            if len(self._queue) + len(docs) > self.config.queue_events or self._stop:
                self._counts["dropped_full"] += len(docs)
                return False
            self._queue.extend(docs)
            self._counts["accepted"] += len(docs)
            self._cond.notify()
        return True

    def stats(self) -> dict[str, int]:
        with self._cond:
            return {**self._counts, "queued": len(self._queue) + self._writing}

    def flush(self, timeout_s: float = 10.0) -> bool:
        """Wait until every queued event is written or dropped (tests, shutdown)."""
        deadline = time.monotonic() + timeout_s
        with self._cond:
            self._cond.notify()
            while self._queue or self._writing:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(min(left, 0.05))
        return True

    def stop(self, timeout_s: float = 5.0) -> None:
        self.flush(timeout_s)
        with self._cond:
            self._stop = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout_s)

    # -- the writer thread -------------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            with self._cond:
                if not self._queue and not self._stop:
                    self._cond.wait(self.config.flush_ms / 1000)
                if self._stop and not self._queue:
                    return
                if self._queue and not self._stop:  # let a small bulk fill for a moment
                    self._cond.wait_for(lambda: len(self._queue) >= self.config.bulk_events or self._stop,
                                        self.config.flush_ms / 1000)
                take = min(len(self._queue), self.config.bulk_events)
                docs = [self._queue.popleft() for _ in range(take)]
                self._writing = take
            try:
                written, duplicates = self._write(docs) if docs else (0, 0)
            except Exception:  # never let the writer die: its events are dropped and counted
                log.exception("writing %d events failed", len(docs))
                written, duplicates = 0, 0
            with self._cond:
                self._counts["written"] += written
                self._counts["duplicates"] += duplicates
                self._counts["dropped_failed"] += len(docs) - written - duplicates
                self._writing = 0
                self._cond.notify_all()

    def _write(self, docs: list[dict]) -> tuple[int, int]:
        """(written, duplicates) of one bulk; the rest failed. Tries again only a bulk that did not
        reach Elasticsearch (`create` with the event's id makes that safe)."""
        prefix = self.config.index_prefix
        for attempt in range(self.config.write_retries + 1):
            try:
                if not self._template:
                    install_template(self._es, prefix)
                    self._template = True
                actions = [{"_op_type": "create", "_index": index_for(prefix, datetime.fromisoformat(d["ts"])),
                            "_id": d["event_id"], "_source": d} for d in docs]
                written, errors = helpers.bulk(self._es, actions, raise_on_error=False, raise_on_exception=False,
                                               chunk_size=len(actions), max_retries=0)
                duplicates = sum(1 for e in errors if e.get("create", {}).get("status") == 409)
                if len(errors) > duplicates:
                    first = next(e["create"] for e in errors if e.get("create", {}).get("status") != 409)
                    reason = first.get("error")
                    log.warning("%d events not written: %s", len(errors) - duplicates,
                                reason.get("type") if isinstance(reason, dict) else reason or first.get("status"))
                return written, duplicates
            except (TransportError, ApiError) as err:
                log.warning("events bulk failed (attempt %d): %s", attempt + 1, type(err).__name__)
                if attempt < self.config.write_retries:
                    time.sleep(0.1 * 2 ** attempt)
        return 0, 0
