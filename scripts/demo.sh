#!/usr/bin/env bash
# The local demo on embedded defaults: Elasticsearch up, Home Depot catalog indexed, BM25 figures.
# Extra arguments go to `shopsearch demo` (see `.venv/bin/shopsearch demo --help`).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
exec .venv/bin/shopsearch demo "$@"
