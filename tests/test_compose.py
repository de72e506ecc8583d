"""docker-compose.yml is valid and runs the same Elasticsearch as the local node (no engine needed)."""

from __future__ import annotations

import shutil
import subprocess

import yaml

from searchstack.settings import PROJECT_ROOT, Settings


def test_compose_file_validates_and_matches_the_local_node() -> None:
    assert shutil.which("docker-compose"), "docker-compose is needed (scripts/test.sh installs it)"
    done = subprocess.run(["docker-compose", "config"], cwd=PROJECT_ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    service = yaml.safe_load(done.stdout)["services"]["elasticsearch"]
    assert service["image"].endswith(f"/elasticsearch:{Settings().es_version}")
    env = service["environment"]
    assert env["discovery.type"] == "single-node"
    assert env["xpack.security.enabled"] == "false"
    assert any(str(v).endswith(":/usr/share/elasticsearch/config/hunspell:ro") for v in service["volumes"])
    assert "healthcheck" in service
