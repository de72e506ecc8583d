"""The gRPC contract in Python: `stubs` (the generated modules, checked against the .proto on import)
and `build` (`python -m reranker.rpc.build`, the code generation step)."""
