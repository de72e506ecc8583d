"""A rolling model update: each replica reloads a new artifact in turn while traffic flows.

Each replica is asked through the existing `RerankerAdmin.Reload`, one at a time: it loads and
warms the new artifact aside while it keeps scoring with the old one, then swaps (reranker/server/
slot.py), so no request fails; each response names the version that scored it. The next replica
starts only when this one answers with the new version, so at any moment at most one replica is
busy loading and the others carry the traffic at full speed.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from dataclasses import dataclass

import grpc

from reranker.client import Candidate, RerankClient, RerankError


class RollingReloadError(RerankError):
    """A replica refused the new artifact (or scores with another); the message is one line. The
    replicas before it serve the new version, it and the ones after it the old one."""

    def __init__(self, address: str, code: grpc.StatusCode, details: str, reloaded: int) -> None:
        super().__init__(address, code, details)
        self.reloaded = reloaded


@dataclass(frozen=True)
class ReplicaReload:
    address: str
    previous_version: str
    model_version: str
    load_ms: float
    seconds: float  # from the Reload call until the replica answered with the new version


def replica_addresses(target: str) -> list[str]:
    """The separate host:port of each replica a target names: an `ipv4:`/`ipv6:` list, a
    comma list, or a DNS name (resolved here, one address per replica)."""
    scheme, _, rest = target.partition(":") if target.split(":", 1)[0] in ("ipv4", "ipv6", "dns") else ("", "", target)
    if scheme == "dns":
        name = rest.lstrip("/").split("/", 1)[-1] if rest.startswith("//") else rest
        host, _, port = name.rpartition(":")
        try:
            infos = socket.getaddrinfo(host.strip("[]"), int(port), type=socket.SOCK_STREAM)
        except (OSError, ValueError) as err:
            raise RollingReloadError(target, grpc.StatusCode.UNAVAILABLE, f"cannot resolve it ({err})", 0) from None
        found = dict.fromkeys(f"[{i[4][0]}]:{i[4][1]}" if i[0] == socket.AF_INET6 else f"{i[4][0]}:{i[4][1]}"
                              for i in infos)
        return list(found)
    return [part.strip() for part in rest.split(",") if part.strip()]


def served_version(client: RerankClient, timeout_s: float = 5.0) -> str:
    """The version a replica scores with, from a one-candidate request."""
    return client.rerank("version", [Candidate("version-probe", 1.0, 1)], timeout=timeout_s).model_version


def rolling_reload(addresses: list[str], artifact: str | None = None, pause_s: float = 0.0,
                   timeout_s: float = 300.0, wait_s: float = 30.0, on_step: Callable[[ReplicaReload], None] | None = None
                   ) -> list[ReplicaReload]:
    """Reload `artifact` (a folder as the replicas see it; None: each one's own) on each replica in
    turn; `pause_s` between replicas (the reloaded one fills its query cache meanwhile), `timeout_s`
    for each load."""
    if not addresses:
        raise ValueError("no replica addresses to reload")
    done: list[ReplicaReload] = []
    for index, address in enumerate(addresses):
        began = time.monotonic()
        with RerankClient(address) as client:
            try:
                client.wait_serving(wait_s)  # a replica still starting gets this long
                result = client.reload(artifact, timeout=timeout_s)
                serving = served_version(client)  # the swap is done when Reload answers; checked all the same
            except RerankError as err:
                raise RollingReloadError(address, err.code, f"{err.details} (replica {index + 1} of "
                                         f"{len(addresses)}; {index} reloaded before it)", index) from None
        if serving != result.model_version:
            raise RollingReloadError(address, grpc.StatusCode.FAILED_PRECONDITION,
                                     f"reloaded {result.model_version} but scores with {serving} (replica "
                                     f"{index + 1} of {len(addresses)}; {index} reloaded before it)", index)
        step = ReplicaReload(address, result.previous_version, result.model_version, result.load_ms,
                             time.monotonic() - began)
        done.append(step)
        if on_step:
            on_step(step)
        if pause_s and index + 1 < len(addresses):
            time.sleep(pause_s)
    return done
