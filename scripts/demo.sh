#!/usr/bin/env bash
# The whole local stack: Elasticsearch, the Home Depot catalog indexed, a trained reranker (the quick
# profile is trained when none is there), the reranker service and the search page; prints the URL.
# `.venv/bin/shopsearch stop` ends it all.
# Extra arguments go to `shopsearch demo` (see `.venv/bin/shopsearch demo --help`).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
exec .venv/bin/shopsearch demo "$@"
