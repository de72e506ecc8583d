"""Min-max normalisation of one list's scores: the BM25 contract between training and serving.

The teacher mixes min-max BM25 into its score, the students' context builder feeds min-max BM25 to
BERM and BERM-O, and the serving model does the same per request; one definition keeps the three
equal (an all-equal list is zeros in each).
"""

from __future__ import annotations

import numpy as np


def minmax(values: np.ndarray) -> np.ndarray:
    """Min-max scaling to [0, 1] within one list (float64); an all-equal list becomes zeros."""
    values = np.asarray(values, dtype=np.float64)
    if values.size == 0:
        return values
    span = values.max() - values.min()
    return (values - values.min()) / span if span > 0 else np.zeros_like(values)
