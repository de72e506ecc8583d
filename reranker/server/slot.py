"""The model being served, swapped whole, and the watcher that reloads it when its files change.

A request takes `slot.model` once and uses that object to the end, so a reload never touches a
request in flight: the new model is loaded and warmed up aside, then one reference assignment
makes it current, and the old one is freed when its last request finishes.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from reranker.server.models import ArtifactError, ServingModel, guard

log = logging.getLogger(__name__)

Loader = Callable[[Path], ServingModel]


@dataclass(frozen=True)
class Swap:
    model: ServingModel
    previous: ServingModel | None
    load_ms: float  # load + warm-up


class ModelSlot:
    def __init__(self, loader: Loader | None = None, path: Path | None = None) -> None:
        self.loader = loader
        self.path = Path(path) if path is not None else None
        self._model: ServingModel | None = None
        self._reload_lock = threading.Lock()  # one load at a time; requests never wait on it
        self._listeners: list[Callable[[Swap], None]] = []

    @property
    def model(self) -> ServingModel | None:
        return self._model

    def on_swap(self, listener: Callable[[Swap], None]) -> None:
        self._listeners.append(listener)

    def install(self, model: ServingModel, load_ms: float = 0.0, path: Path | None = None) -> Swap:
        """Warm `model` up, then make it current (`path`: the artifact it came from)."""
        model = guard(model)
        began = time.perf_counter()
        model.warm_up()
        swap = Swap(model, self._model, load_ms + 1000 * (time.perf_counter() - began))
        self._model = model  # the swap: a single reference assignment
        if path is not None:
            self.path = path
        for listener in self._listeners:
            listener(swap)
        log.info("serving %s %s (loaded and warmed up in %.0f ms)", model.name, model.version, swap.load_ms)
        return swap

    def load(self, path: Path | None = None) -> Swap:
        """Load the artifact at `path` (default: the slot's), warm it up and swap it in.

        Raises ArtifactError and keeps the current model when the artifact is missing or corrupt.
        """
        if self.loader is None:
            raise ArtifactError("this server's model is not loaded from an artifact, so it cannot be reloaded")
        path = Path(path) if path is not None else self.path
        if path is None:
            raise ArtifactError("no artifact folder configured (set SHOPSEARCH_RERANK_ARTIFACT or pass --artifact)")
        with self._reload_lock:
            began = time.perf_counter()
            model = self.loader(path)
            return self.install(model, 1000 * (time.perf_counter() - began), path)


def fingerprint(path: Path) -> tuple:
    """What changes when an artifact is rewritten or replaced: its resolved folder, and the name,
    size and mtime of each file in it (a folder swapped in with os.replace gets a new inode)."""
    try:
        resolved = path.resolve()
        stat = resolved.stat()
        entries = sorted((e.name, e.stat().st_size, e.stat().st_mtime_ns) for e in os.scandir(resolved) if e.is_file())
        return (str(resolved), stat.st_ino, tuple(entries))
    except OSError:
        return ("missing", str(path))


class ArtifactWatcher:
    """Polls the slot's artifact folder; when it changed and then held still for one poll, reloads.

    A failed reload (a half-written or corrupt artifact) is logged and the old model keeps serving;
    the watcher tries again only once the files change again.
    """

    def __init__(self, slot: ModelSlot, poll_s: float, on_error: Callable[[str], None] | None = None) -> None:
        self.slot = slot
        self.poll_s = poll_s
        self.on_error = on_error
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="artifact-watcher", daemon=True)
        self._seen: tuple | None = None
        # a reload by request must not be seen as a change and loaded a second time
        slot.on_swap(lambda swap: self._remember())

    def _remember(self) -> None:
        if self.slot.path is not None:
            self._seen = fingerprint(self.slot.path)

    def start(self) -> None:
        self._remember()
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)

    def _run(self) -> None:
        pending: tuple | None = None
        while not self._stop.wait(self.poll_s):
            path = self.slot.path
            if path is None:
                continue
            now = fingerprint(path)
            if now == self._seen:
                pending = None
                continue
            if now != pending:  # still changing (or just changed): wait one more poll
                pending = now
                continue
            self._seen, pending = now, None
            try:
                self.slot.load(path)
            except ArtifactError as err:
                log.error("artifact at %s changed but cannot be loaded; still serving the old model: %s", path, err)
                if self.on_error:
                    self.on_error(str(err))
            except Exception:  # never let the watcher die: the service keeps its old model
                log.exception("reloading %s failed; still serving the old model", path)
                if self.on_error:
                    self.on_error("internal error")
