"""Click-graph context for BERM: metapath neighbor sampling and the model's input tensors."""

from reranker.graph.neighbors import ITEM_PATHS, PATHS, QUERY_PATHS, NeighborSampler

__all__ = ["ITEM_PATHS", "PATHS", "QUERY_PATHS", "NeighborSampler"]
