#!/usr/bin/env bash
# Installs what the project needs into .venv: once, and again whenever pyproject.toml changes.
# Java 17+ and Maven run the local Elasticsearch node, and a JDK (javac) builds its rescorer plugin
# (es_plugin/); as root, missing ones come from Debian.
set -euo pipefail
cd "$(dirname "$0")/.."

apt_install() {
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        echo "installing $* from Debian"
        (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@") >/dev/null
    else
        echo "error: please install $* (needs root)" >&2
        exit 1
    fi
}
command -v java >/dev/null || apt_install openjdk-17-jre-headless
command -v javac >/dev/null || apt_install openjdk-17-jdk-headless
command -v mvn >/dev/null || apt_install maven

python=${PYTHON:-}
if [ -z "$python" ]; then
    for candidate in python3.11 python3; do
        if command -v "$candidate" >/dev/null && "$candidate" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
            python=$candidate; break
        fi
    done
fi
[ -n "$python" ] || { echo "error: Python 3.11 not found (set PYTHON=/path/to/python3.11)" >&2; exit 1; }

[ -x .venv/bin/python ] || "$python" -m venv .venv
stamp=".venv/.installed-$(sha256sum pyproject.toml | cut -c1-16)"
if [ ! -f "$stamp" ]; then
    echo "installing Python packages into .venv (a few minutes the first time)"
    .venv/bin/python -m pip install -q --upgrade pip
    .venv/bin/python -m pip install -q -e ".[test]"
    rm -f .venv/.installed-*
    touch "$stamp"
fi
# The gRPC stubs (git-ignored), from proto/reranker.proto; a no-op when they are current.
.venv/bin/python -m reranker.rpc.build >/dev/null
