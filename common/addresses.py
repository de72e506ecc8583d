"""Where to connect to a server bound to `host`: an any-address bind is reached on loopback."""

from __future__ import annotations

ANY_ADDRESSES = ("0.0.0.0", "[::]", "::")


def connectable(host: str) -> str:
    """`host` as a client should dial it: 127.0.0.1 for an any-address bind, else `host` itself."""
    return "127.0.0.1" if host in ANY_ADDRESSES else host
