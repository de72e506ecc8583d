"""The wire contract (proto/reranker.proto) as Python modules, generated on first import of this module.

`pb` holds the messages, `pb_grpc` the stubs and servicer bases; never import _generated directly,
so the stubs are always checked against the .proto first.
"""

from __future__ import annotations

from reranker.rpc.build import ensure_stubs

ensure_stubs()

from reranker.rpc._generated import reranker_pb2 as pb  # noqa: E402
from reranker.rpc._generated import reranker_pb2_grpc as pb_grpc  # noqa: E402

RERANKER_SERVICE = pb.DESCRIPTOR.services_by_name["Reranker"].full_name  # "shopsearch.reranker.v1.Reranker"
ADMIN_SERVICE = pb.DESCRIPTOR.services_by_name["RerankerAdmin"].full_name

__all__ = ["pb", "pb_grpc", "RERANKER_SERVICE", "ADMIN_SERVICE"]
