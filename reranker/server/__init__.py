"""The gRPC reranker service (contract: proto/reranker.proto).

models.py      the serving protocol and its three models (BERM-O, the teacher, the BM25 floor)
validation.py  request checks and their INVALID_ARGUMENT messages
slot.py        the current model, swapped atomically; the artifact file watcher
service.py     the servicers (Rerank, Reload): deadlines, response building, log line, metrics
metrics.py     Prometheus metrics on a per-server registry
app.py         wiring: health, reflection, start-up order, graceful stop on SIGTERM
"""
