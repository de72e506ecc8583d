"""docker-compose.yml is valid and describes the demo stack (no engine needed): the official
Elasticsearch image configured like the local node, the one-shot setup, the reranker and the page
from the repo's Dockerfiles, health checks, an artifacts volume, and commands the CLI accepts."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest
import yaml

from searchstack.settings import PROJECT_ROOT, Settings


@pytest.fixture(scope="module")
def compose() -> dict:
    assert shutil.which("docker-compose"), "docker-compose is needed (scripts/test.sh installs it)"
    done = subprocess.run(["docker-compose", "config"], cwd=PROJECT_ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return yaml.safe_load(done.stdout)


def test_compose_file_validates_and_matches_the_local_node(compose) -> None:
    service = compose["services"]["elasticsearch"]
    assert service["image"].endswith(f"/elasticsearch:{Settings().es_version}")
    env = service["environment"]
    assert env["discovery.type"] == "single-node"
    assert env["xpack.security.enabled"] == "false"
    assert any(str(v).endswith(":/usr/share/elasticsearch/config/hunspell:ro") for v in service["volumes"])
    assert "healthcheck" in service


def test_the_stack_services(compose) -> None:
    services = compose["services"]
    assert set(services) == {"elasticsearch", "setup", "reranker", "web"}
    for name in ("setup", "reranker", "web"):
        service = services[name]
        dockerfile = PROJECT_ROOT / service["build"]["dockerfile"]
        assert dockerfile.is_file(), dockerfile
        assert service["environment"]["SHOPSEARCH_ES_URL"] == "http://elasticsearch:9200"
        assert any(str(v).startswith("artifacts:/artifacts") for v in service["volumes"]), name
    assert "artifacts" in compose["volumes"] and "es-data" in compose["volumes"]
    assert services["setup"]["depends_on"]["elasticsearch"]["condition"] == "service_healthy"
    assert services["reranker"]["depends_on"]["setup"]["condition"] == "service_completed_successfully"
    assert services["web"]["depends_on"]["setup"]["condition"] == "service_completed_successfully"
    assert "/artifacts/serving" in services["reranker"]["command"]
    assert "reranker:50051" in services["web"]["command"]
    # several reranker replicas behind the one name, balanced by the page's gRPC client
    assert int(services["reranker"]["deploy"]["replicas"]) >= 2
    assert services["web"]["environment"]["SHOPSEARCH_RERANK_CLIENT_HEALTH_CHECK"] == "true"
    for name in ("reranker", "web"):
        assert services[name]["healthcheck"]["test"][:3] == ["CMD", "shopsearch", "ping"]
        assert all(port["host_ip"] == "127.0.0.1" if isinstance(port, dict) else str(port).startswith("127.0.0.1:")
                   for port in services[name]["ports"]), "published on loopback only"


def test_every_command_in_the_file_is_one_the_cli_takes(compose) -> None:
    """Each service's command and health check, with --help: the CLI knows the command and its options."""
    commands = []
    for service in compose["services"].values():
        if service.get("command", [None])[0] == "shopsearch":
            commands.append(service["command"][1:])
        test = service.get("healthcheck", {}).get("test", [])
        if test[:2] == ["CMD", "shopsearch"]:
            commands.append(test[2:])
    assert len(commands) == 5
    for command in commands:
        done = subprocess.run([sys.executable, "-m", "searchstack", *command, "--help"], capture_output=True, text=True,
                              cwd=PROJECT_ROOT)
        assert done.returncode == 0 and "Usage:" in done.stdout, (command, done.stderr)


def test_the_images_ship_no_data_and_run_as_a_user() -> None:
    ignored = (PROJECT_ROOT / ".dockerignore").read_text().split()
    assert {".venv", "artifacts", "data", "var", ".cache"} <= set(ignored)
    for name in ("reranker", "web"):
        text = (PROJECT_ROOT / "docker" / f"{name}.Dockerfile").read_text()
        assert "FROM python:3.11" in text and "USER shopsearch" in text and "HEALTHCHECK" in text
        assert "COPY . " not in text  # only code folders go in, never data


def test_the_elasticsearch_image_has_the_rescorer_plugin(compose) -> None:
    service = compose["services"]["elasticsearch"]
    dockerfile = PROJECT_ROOT / service["build"]["dockerfile"]
    text = dockerfile.read_text()
    assert "FROM docker.elastic.co/elasticsearch/elasticsearch:" + Settings().es_version in text
    assert "mvn -q -B package" in text and "bin/elasticsearch-plugin install --batch file:///" in text
    assert service["environment"]["shopsearch.rerank.target"] == "dns:///reranker:50051"  # every replica
    assert service["environment"]["shopsearch.rerank.deadline"].endswith("ms")


def test_the_compose_node_is_handed_every_plugin_setting_as_the_local_node_is(compose) -> None:
    from es_config.local_node import plugin_node_settings

    env = compose["services"]["elasticsearch"]["environment"]
    given = {key: str(value) for key, value in env.items() if key.startswith("shopsearch.rerank.")}
    local = {key: str(value).lower() if isinstance(value, bool) else str(value)
             for key, value in plugin_node_settings(Settings()).items()}
    assert set(given) == set(local)
    del given["shopsearch.rerank.target"], local["shopsearch.rerank.target"]  # a DNS name there, loopback here
    assert given == local
