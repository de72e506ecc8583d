"""The shopsearch rescorer plugin (es_plugin/): built with Maven, installed into the local node.

The zip is rebuilt only when its inputs change (the Maven project and proto/reranker.proto, hashed
into a stamp beside the zip), and reinstalled only when the installed copy came from other inputs.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

from common.errors import ShopsearchError

PLUGIN_NAME = "shopsearch-rerank"
STAMP = ".inputs-sha256"


class PluginError(ShopsearchError, RuntimeError):
    """The plugin could not be built or installed; the message is one line for the user."""


def inputs_digest(project: Path) -> str:
    """One hash of everything the zip is built from."""
    digest = hashlib.sha256()
    files = [project / "pom.xml", project.parent / "proto" / "reranker.proto",
             *sorted(p for p in (project / "src").rglob("*") if p.is_file())]
    for path in files:
        digest.update(str(path.relative_to(project.parent)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def _zip_in(project: Path) -> Path | None:
    found = sorted((project / "target").glob(f"{PLUGIN_NAME}-*.zip"))
    return found[-1] if found else None


def build(project: Path) -> Path:
    """The plugin zip: the one already built from these inputs, or a fresh `mvn package`."""
    digest = inputs_digest(project)
    stamp = project / "target" / STAMP
    built = _zip_in(project)
    if built is not None and stamp.exists() and stamp.read_text().strip() == digest:
        return built
    mvn = shutil.which("mvn")
    if mvn is None:
        raise PluginError("Maven not found: it builds the Elasticsearch plugin (apt-get install maven)")
    if shutil.which("javac") is None:
        raise PluginError("javac not found: building the plugin needs a JDK 17 (apt-get install openjdk-17-jdk-headless)")
    done = subprocess.run([mvn, "-q", "-B", "package"], cwd=project, capture_output=True, text=True)
    built = _zip_in(project)
    if done.returncode != 0 or built is None:
        lines = [line for line in (done.stdout + done.stderr).splitlines() if "ERROR" in line] or \
            (done.stdout + done.stderr).strip().splitlines()[-1:] or ["no output"]
        raise PluginError(f"the plugin build failed (mvn package in {project}): {lines[0].strip()[:300]}")
    stamp.write_text(digest + "\n")
    return built


def install(home: Path, zip_path: Path, java_home: Path) -> bool:
    """Install the zip into the distribution at `home`; False when the same build is there already."""
    digest = (zip_path.parent / STAMP).read_text().strip() if (zip_path.parent / STAMP).exists() else ""
    target = home / "plugins" / PLUGIN_NAME
    marker = home / f".{PLUGIN_NAME}{STAMP}"  # outside plugins/, where ES expects only plugin folders
    if digest and marker.exists() and marker.read_text().strip() == digest:
        return False
    tool = home / "bin" / "elasticsearch-plugin"
    env = {**os.environ, "ES_JAVA_HOME": str(java_home)}
    env.pop("JAVA_HOME", None)
    if target.exists():
        subprocess.run([str(tool), "remove", PLUGIN_NAME], env=env, capture_output=True, text=True)
        shutil.rmtree(target, ignore_errors=True)
    done = subprocess.run([str(tool), "install", "--batch", zip_path.resolve().as_uri()], env=env,
                          capture_output=True, text=True)
    if done.returncode != 0:
        tail = [line for line in (done.stdout + done.stderr).strip().splitlines() if line.strip()][-1:] or ["no output"]
        raise PluginError(f"installing the plugin into {home} failed: {tail[0][:300]}")
    marker.write_text(digest + "\n")
    return True
