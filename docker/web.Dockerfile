# The search page (`shopsearch web`): BM25 from Elasticsearch beside the reranker's order.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 \
    SHOPSEARCH_ARTIFACTS_DIR=/artifacts \
    SHOPSEARCH_WEB_HOST=0.0.0.0 SHOPSEARCH_WEB_PORT=8080
WORKDIR /app

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
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=10s --start-period=60s --retries=6 CMD ["shopsearch", "ping", "web"]
CMD ["shopsearch", "web"]
