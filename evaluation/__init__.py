"""Offline evaluation of rankers on held-out queries with human grades."""
