"""NDCG@k of one ranked list, the variant of evaluation/metrics.py (ranx's `ndcg`), without ranx.

The page scores one query per search; ranx's numba kernels cost seconds to compile in each new
process (about 14 s on the 2-core machine), far past a search's budget, so the page uses this and
tests/test_metrics.py pins it to ranx on the same lists.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping


def ndcg_at(ranked_ids: Iterable[str], grades: Mapping[str, float], k: int = 10) -> float | None:
    """NDCG@k with linear gain (DCG = sum gain_i / log2(i + 1), ranx's `ndcg`); unjudged items gain 0.

    None when no item has a positive grade: NDCG is undefined there, not 0.
    """
    ideal = sorted((g for g in grades.values() if g > 0), reverse=True)[:k]
    if not ideal:
        return None
    idcg = sum(g / math.log2(i + 2) for i, g in enumerate(ideal))
    dcg = sum(grades.get(pid, 0.0) / math.log2(i + 2) for i, pid in enumerate(list(ranked_ids)[:k]))
    return dcg / idcg
