# The reranker service (`shopsearch serve`), and the one-shot setup that indexes the catalog and
# trains the quick profile when no artifact is in the artifacts volume (`shopsearch demo --prepare-only`).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 \
    SHOPSEARCH_ARTIFACTS_DIR=/artifacts \
    SHOPSEARCH_RERANK_HOST=0.0.0.0 SHOPSEARCH_RERANK_PORT=50051 SHOPSEARCH_RERANK_METRICS_PORT=9464
WORKDIR /app

# dependencies first (a layer that survives code edits), then the code
COPY pyproject.toml README.md ./
RUN mkdir -p es_config indexer reranker evaluation searchstack bench frontend \
    && for p in es_config indexer reranker evaluation searchstack bench frontend; do touch $p/__init__.py; done \
    && pip install . && pip uninstall -y shopsearch
COPY common common
COPY es_config es_config
COPY indexer indexer
COPY reranker reranker
COPY evaluation evaluation
COPY searchstack searchstack
COPY bench bench
COPY frontend frontend
COPY proto proto
# editable: the code runs from /app, where proto/ and the generated stubs live
RUN pip install --no-deps -e . && python -m reranker.rpc.build

RUN useradd --create-home --uid 1000 shopsearch && mkdir -p /artifacts && chown shopsearch /artifacts
USER shopsearch
VOLUME /artifacts
EXPOSE 50051 9464
HEALTHCHECK --interval=10s --timeout=10s --start-period=120s --retries=6 CMD ["shopsearch", "ping", "reranker"]
CMD ["shopsearch", "serve", "--artifact", "/artifacts/serving"]
