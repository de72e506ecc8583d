"""Errors of the training pipeline (no heavy imports, so the CLI can name them cheaply)."""

from common.errors import ShopsearchError


class PipelineError(ShopsearchError, ValueError):
    """A pipeline request that cannot run: an unknown stage or setting, a missing teacher to start from."""
