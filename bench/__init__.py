"""Benchmarks: figures and ratios measured in one run (the machine is noisy; compare within a run)."""
