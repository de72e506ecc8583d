"""Errors of the service's edges, importable without loading any model code (the CLI's error
handler knows them before a command runs)."""

from common.errors import ShopsearchError


class ServerStartError(ShopsearchError):
    """The service refuses to start: a missing or corrupt artifact, a port it cannot listen on.
    The message is one line."""
