"""`python -m bench.serve_model MODEL [--artifact P] [--titles T.json]`: one benchmark server.

The reranker service's own server code (reranker.server.app) around one of three models: `bm25`
(the do-nothing floor), `berm-o` (an artifact folder) or `teacher` (the cross-encoder, titles from
a JSON file of {product id: title}). It listens on a free port, prints one JSON line
{"port", "model", "version"} on stdout once health is SERVING, and stops gracefully on SIGTERM.
A separate process, so the benchmark's client threads never share a GIL with the server.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from reranker.server.app import RerankServer, ServerStartError, run_until_signal


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.serve_model")
    parser.add_argument("model", choices=("bm25", "berm-o", "teacher"))
    parser.add_argument("--artifact", type=Path)
    parser.add_argument("--titles", type=Path)
    parser.add_argument("--workers", type=int, help="Request threads (default: SHOPSEARCH_RERANK_WORKERS).")
    parser.add_argument("--port", type=int, default=0, help="gRPC port (0: any free one).")
    parser.add_argument("--request-log", type=Path, help="Write the per-request JSON lines here (as in production).")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
    if args.request_log:
        handler = logging.FileHandler(args.request_log)
        handler.setFormatter(logging.Formatter("%(message)s"))
        request_log = logging.getLogger("reranker.requests")
        request_log.addHandler(handler)
        request_log.setLevel(logging.INFO)
        request_log.propagate = False
    from searchstack.settings import load_settings

    settings = load_settings(rerank_workers=args.workers, rerank_host="127.0.0.1", rerank_port=args.port,
                             rerank_max_candidates=1000, rerank_default_deadline_ms=60_000, rerank_grace_s=5,
                             rerank_reload_poll_s=0)
    config = settings.rerank.model_copy(update={"metrics_port": None})
    if args.model == "berm-o":
        from reranker.server.models import berm_o_loader

        server = RerankServer(config, loader=berm_o_loader(config), artifact=args.artifact)
    elif args.model == "teacher":
        from reranker.models.teacher import Teacher
        from reranker.server.models import TeacherModel

        titles = json.loads(args.titles.read_text())
        server = RerankServer(config, model=TeacherModel(Teacher.from_base(), titles))
    else:
        from reranker.server.models import Bm25Order

        server = RerankServer(config, model=Bm25Order())

    def ready(s: RerankServer) -> None:
        print(json.dumps({"port": s.port, "model": s.slot.model.name, "version": s.slot.model.version}), flush=True)

    try:
        server.start()
        run_until_signal(server, on_ready=ready)
    except ServerStartError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
