"""Errors of the training pipeline (no heavy imports, so the CLI can name them cheaply)."""


class PipelineError(ValueError):
    """A pipeline request that cannot run: an unknown stage or setting, a missing teacher to start from."""
