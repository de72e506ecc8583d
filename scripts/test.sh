#!/usr/bin/env bash
# The test suite, against a real Elasticsearch node that the tests start (or ES_URL, if set).
# Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
# `docker-compose config` validates docker-compose.yml; no Docker engine is needed for that.
if ! command -v docker-compose >/dev/null && [ "$(id -u)" = 0 ]; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker-compose) >/dev/null
fi
# The browser test drives Debian's chromium through Playwright (never a browser build of its own).
if ! command -v chromium >/dev/null && [ "$(id -u)" = 0 ]; then
    echo "installing chromium from Debian (for the browser test)"
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) >/dev/null
fi
exec .venv/bin/python -m pytest "$@"
