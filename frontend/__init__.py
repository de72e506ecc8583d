"""The demo search page: Elasticsearch BM25 beside the reranked order (see frontend/app.py)."""
