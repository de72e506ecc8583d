"""The base of the project's error family.

Every error that library code raises for a reason a user can act on (a missing file, a bad row, a
node that will not start, a request out of bounds) derives from `ShopsearchError`, so an edge (the
CLI, a benchmark, the page) catches one class and turns it into one line. Each keeps its older base
too (`ValueError`, `RuntimeError`, ...), so code that caught those still does. Importing this module
costs nothing: no third-party imports.
"""

from __future__ import annotations


class ShopsearchError(Exception):
    """A failure with a one-line reason for the user (the first line of `str(err)`)."""
