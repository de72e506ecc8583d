"""Pseudo-queries cut from product titles: unlabeled distillation queries a shop has for free.

The paper distils on massive unlabeled (query, item) pairs. A new shop has few logged queries but
a whole catalog, so we cut shopper-like queries out of titles, take their BM25 top-K and let the
teacher score them. Like a test query, a pseudo-query is not in the click graph, so its student
input meets the graph only through FAISS stand-ins.

Choices: a seeded sample of products; from each title's first `head` words (brand, type and main
attributes come first in catalog titles) a contiguous span of 2-4 words, lower-cased, with
punctuation-only and one-character tokens dropped; spans that repeat are skipped, so the result
may hold fewer than `n` queries on a tiny catalog.
"""

from __future__ import annotations

import random
import re
from collections.abc import Mapping

from indexer.records import Product

PREFIX = "pseudo:"
_WORD = re.compile(r"[a-z0-9][a-z0-9./-]*")


def pseudo_queries(products: Mapping[str, Product], n: int, seed: int, head: int = 8) -> dict[str, str]:
    """Up to `n` pseudo-queries, id (`pseudo:<product id>`) -> text; deterministic for a seed."""
    if n <= 0:
        return {}
    rng = random.Random(seed)
    ids = sorted(products)
    rng.shuffle(ids)
    out: dict[str, str] = {}
    seen: set[str] = set()
    for product_id in ids:
        if len(out) >= n:
            break
        words = [w for w in _WORD.findall(products[product_id].title.lower()) if len(w) > 1][:head]
        if len(words) < 2:
            continue
        length = rng.randint(2, min(4, len(words)))
        start = rng.randint(0, len(words) - length)
        text = " ".join(words[start : start + length])
        if text not in seen:
            seen.add(text)
            out[PREFIX + product_id] = text
    return out
