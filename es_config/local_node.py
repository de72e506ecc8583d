"""Run a real single-node Elasticsearch from the project's own files, without Docker.

The node is Elastic's own distribution zip (`integ-test-zip`, core modules only) fetched from
Maven Central with `mvn dependency:copy` into a project-local cache, unpacked once, and run with a
per-port config folder (`var/es-<port>/`) so the demo node and the test node can live side by side.

Quirks of that distribution, handled here:
- it refuses to run as root, so under root the node runs as an unprivileged system user;
- it has no `GET /` (no rest-root module), so readiness is a wait on `_cluster/health`;
- analysis is core-only: stemming comes from the `hunspell` filter, whose en_US dictionaries
  ship in `es_config/hunspell/` and are copied into each node's config folder.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import pwd
import shutil
import signal
import socket
import stat
import subprocess
import time
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from common.errors import ShopsearchError
from es_config import plugin
from es_config.query import ID_FIELD, TITLE_FIELD

log = logging.getLogger(__name__)

HUNSPELL_DIR = Path(__file__).resolve().parent / "hunspell"
PLUGIN_PROJECT = Path(__file__).resolve().parent.parent / "es_plugin"
MAVEN_ARTIFACT = "org.elasticsearch.distribution.integ-test-zip:elasticsearch:{version}:zip"
NODE_USER = "shopsearch-es"


class NodeError(ShopsearchError, RuntimeError):
    """A problem with the local node, phrased as one line for the user."""


@dataclass(frozen=True)
class NodeStatus:
    running: bool
    pid: int | None
    health: str | None  # green / yellow / red, or None when the node does not answer
    url: str


@dataclass(frozen=True)
class StartResult:
    already_running: bool
    seconds: float
    url: str


def cluster_health(url: str, timeout_s: float = 2.0) -> dict | None:
    """The node's `_cluster/health`, or None when nothing (or not Elasticsearch) answers."""
    try:
        with urllib.request.urlopen(f"{url}/_cluster/health", timeout=timeout_s) as response:
            body = json.loads(response.read())
    except (OSError, ValueError):
        return None
    return body if isinstance(body, dict) and "status" in body else None


def port_in_use(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def find_java_home() -> Path:
    """The JDK the node runs on: ES_JAVA_HOME, JAVA_HOME, or the `java` on PATH."""
    for var in ("ES_JAVA_HOME", "JAVA_HOME"):
        if os.environ.get(var) and (Path(os.environ[var]) / "bin" / "java").exists():
            return Path(os.environ[var])
    java = shutil.which("java")
    if java is None:
        raise NodeError(
            "Java not found: Elasticsearch needs a JDK 17 or newer "
            "(apt-get install openjdk-17-jre-headless, or set JAVA_HOME)"
        )
    return Path(os.path.realpath(java)).parent.parent


def _enterable_by_others(folder: Path) -> bool:
    return all(not p.exists() or p.stat().st_mode & stat.S_IXOTH for p in [folder, *folder.parents])


def node_folders(cache_dir: Path, var_dir: Path) -> tuple[Path, Path]:
    """Under root, folders the unprivileged node user can enter: the given ones where it can, else
    /var/tmp/shopsearch-<uid>/ (the checkout in root's 0700 home is the usual case). Stable per
    path, so `es status` and `es stop` find the node `es start` began."""
    if os.geteuid() != 0:
        return cache_dir, var_dir
    base = Path("/var/tmp") / f"shopsearch-{os.getuid()}"
    chosen = []
    for name, folder in (("elasticsearch", cache_dir), ("var", var_dir)):
        if _enterable_by_others(folder):
            chosen.append(folder)
            continue
        moved = base / f"{name}-{hashlib.sha256(str(folder.resolve()).encode()).hexdigest()[:8]}"
        if str(moved) not in _SAID:
            _SAID.add(str(moved))
            log.warning("%s is not open to the node user %s; the node's %s folder is %s", folder, NODE_USER,
                        "download" if name == "elasticsearch" else "state", moved)
        chosen.append(moved)
    if chosen != [cache_dir, var_dir]:
        base.mkdir(mode=0o755, exist_ok=True)
        base.chmod(0o755)
    return chosen[0], chosen[1]


_SAID: set[str] = set()


def _extract(zip_path: Path, target: Path) -> None:
    # zipfile drops Unix permissions; the launch scripts need their exec bits back.
    with zipfile.ZipFile(zip_path) as archive:
        for info in archive.infolist():
            extracted = Path(archive.extract(info, target))
            mode = (info.external_attr >> 16) & 0o777
            if mode:
                extracted.chmod(mode | (0o755 if info.is_dir() else 0o444))


def plugin_node_settings(settings) -> dict:
    """Every one of the plugin's node settings (es_plugin RerankSettings.java), from the project's
    settings: where the node calls the reranker, how long it waits, how it retries, how many
    candidates a search may send (the rerank depth), what text and where the ids are. None is left to a Java default."""
    rerank = settings.rerank
    return {
        "shopsearch.rerank.target": settings.es_rerank_target or settings.resolved_rerank_target,
        "shopsearch.rerank.retry_attempts": rerank.balancing.retry_attempts,
        "shopsearch.rerank.retry_backoff": f"{rerank.balancing.retry_backoff_ms:g}ms",
        "shopsearch.rerank.deadline": f"{rerank.deadlines.plugin_ms:g}ms",
        "shopsearch.rerank.fail_on_error": settings.es_rerank_fail_on_error,
        "shopsearch.rerank.max_window": rerank.depth,
        "shopsearch.rerank.text_field": TITLE_FIELD,
        "shopsearch.rerank.id_field": ID_FIELD,
        "shopsearch.rerank.max_text_chars": rerank.limits.max_text_chars,
    }


@dataclass
class LocalNode:
    version: str
    host: str
    port: int
    heap: str
    cache_dir: Path
    var_dir: Path
    start_timeout_s: float = 120.0
    # The rescorer plugin's Maven project (built or reused, then installed); None: a plain node.
    plugin_project: Path | None = None
    node_settings: dict = field(default_factory=dict)  # more elasticsearch.yml lines (the plugin's)

    def __post_init__(self) -> None:
        self.cache_dir, self.var_dir = node_folders(Path(self.cache_dir), Path(self.var_dir))

    @classmethod
    def from_settings(cls, settings) -> "LocalNode":
        return cls(
            version=settings.es_version,
            host=settings.es_host,
            port=settings.es_port,
            heap=settings.es_heap,
            cache_dir=settings.es_cache_dir,
            var_dir=settings.es_var_dir,
            start_timeout_s=settings.es_start_timeout_s,
            plugin_project=PLUGIN_PROJECT if settings.es_plugin else None,
            node_settings=plugin_node_settings(settings) if settings.es_plugin else {},
        )

    # -- paths ---------------------------------------------------------------------------------
    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def home(self) -> Path:
        return self.cache_dir / f"elasticsearch-{self.version}"

    @property
    def node_dir(self) -> Path:
        return self.var_dir / f"es-{self.port}"

    @property
    def pid_file(self) -> Path:
        return self.node_dir / "node.pid"

    @property
    def console_log(self) -> Path:
        return self.node_dir / "logs" / "console.log"

    @property
    def transport_port(self) -> int:
        return self.port + 100

    # -- fetch and configure ----------------------------------------------------------------------
    def fetch(self) -> Path:
        """Download (once) and unpack the distribution; returns its home folder."""
        if (self.home / "bin" / "elasticsearch").exists():
            return self.home
        mvn = shutil.which("mvn")
        if mvn is None:
            raise NodeError(
                "Maven not found: it fetches Elasticsearch from Maven Central "
                "(apt-get install maven), or unpack the distribution into " + str(self.home)
            )
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        artifact = MAVEN_ARTIFACT.format(version=self.version)
        log.info("fetching %s with Maven", artifact)
        done = subprocess.run(
            [mvn, "-q", "-B", "dependency:copy", f"-Dartifact={artifact}",
             f"-DoutputDirectory={self.cache_dir}"],
            cwd=self.cache_dir, capture_output=True, text=True,
        )
        zip_path = self.cache_dir / f"elasticsearch-{self.version}.zip"
        if done.returncode != 0 or not zip_path.exists():
            tail = (done.stdout + done.stderr).strip().splitlines()[-1:] or ["no output"]
            raise NodeError(f"Maven could not fetch {artifact}: {tail[0]}")
        _extract(zip_path, self.cache_dir)
        zip_path.unlink()
        return self.home

    def configure(self) -> None:
        """Write this node's config folder: single node, no security, loopback, chosen ports."""
        config = self.node_dir / "config"
        if not config.exists():
            shutil.copytree(self.home / "config", config)
        for sub in ("data", "logs"):
            (self.node_dir / sub).mkdir(parents=True, exist_ok=True)
        settings = {
            "cluster.name": "shopsearch",
            "node.name": f"shopsearch-{self.port}",
            "path.data": str(self.node_dir / "data"),
            "path.logs": str(self.node_dir / "logs"),
            "network.host": self.host,
            "http.port": self.port,
            "transport.port": self.transport_port,
            "discovery.type": "single-node",
            "xpack.security.enabled": False,
            # A nearly full disk must not turn the index read-only in the middle of a demo.
            "cluster.routing.allocation.disk.threshold_enabled": False,
            **self.node_settings,
        }
        (config / "elasticsearch.yml").write_text(
            "".join(f"{key}: {json.dumps(value)}\n" for key, value in settings.items())
        )
        (config / "jvm.options.d").mkdir(exist_ok=True)
        (config / "jvm.options.d" / "heap.options").write_text(f"-Xms{self.heap}\n-Xmx{self.heap}\n")
        shutil.copytree(HUNSPELL_DIR, config / "hunspell", dirs_exist_ok=True)

    def install_plugin(self, java_home: Path) -> None:
        """Build (or reuse) the rescorer plugin zip and install it, when this node has one."""
        if self.plugin_project is None:
            return
        try:
            if plugin.install(self.home, plugin.build(self.plugin_project), java_home):
                log.info("installed the %s plugin into %s", plugin.PLUGIN_NAME, self.home)
        except plugin.PluginError as err:
            raise NodeError(str(err)) from None

    # -- process control ---------------------------------------------------------------------------
    def _pid(self) -> int | None:
        try:
            pid = int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            pass  # alive, owned by the node user
        return pid

    def status(self) -> NodeStatus:
        pid = self._pid()
        health = cluster_health(self.url) if pid else None
        return NodeStatus(running=pid is not None, pid=pid,
                          health=health["status"] if health else None, url=self.url)

    def start(self) -> StartResult:
        """Fetch, configure and start the node, then wait until its cluster health is yellow."""
        began = time.monotonic()
        if self._pid() is not None:
            self.wait_healthy(began)
            return StartResult(True, time.monotonic() - began, self.url)
        for port in (self.port, self.transport_port):
            if port_in_use(self.host, port):
                raise NodeError(
                    f"port {port} on {self.host} is in use by another process; "
                    "choose another with SHOPSEARCH_ES_PORT (or point SHOPSEARCH_ES_URL at that node)"
                )
        java_home = find_java_home()
        self.fetch()
        self.install_plugin(java_home)
        node_began = time.monotonic()  # a plugin build is not the node's start time
        self.configure()
        run_as = self._node_user()
        env = {**os.environ, "ES_JAVA_HOME": str(java_home), "ES_PATH_CONF": str(self.node_dir / "config")}
        env.pop("JAVA_HOME", None)  # the launcher warns when both are set
        self.pid_file.unlink(missing_ok=True)
        with open(self.console_log, "ab") as console:
            process = subprocess.Popen(
                [str(self.home / "bin" / "elasticsearch"), "-p", str(self.pid_file)],
                stdout=console, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env=env, cwd=self.node_dir, start_new_session=True,
                user=run_as, group=run_as,
            )
        self.wait_healthy(node_began, process)
        return StartResult(False, time.monotonic() - began, self.url)

    def wait_healthy(self, began: float, process: subprocess.Popen | None = None) -> None:
        while time.monotonic() - began < self.start_timeout_s:
            health = cluster_health(self.url)
            if health and health["status"] in ("green", "yellow"):
                return
            if process is not None and process.poll() is not None:
                raise NodeError(
                    f"Elasticsearch exited with code {process.returncode} during start; "
                    f"see {self._log_hint()}"
                )
            time.sleep(0.5)
        raise NodeError(
            f"Elasticsearch did not become healthy within {self.start_timeout_s:.0f} s; "
            f"see {self._log_hint()}"
        )

    def _log_hint(self) -> Path:
        server_log = self.node_dir / "logs" / "shopsearch.log"
        return server_log if server_log.exists() else self.console_log

    def stop(self, timeout_s: float = 60.0) -> bool:
        """Stop the node; returns False when none was running."""
        pid = self._pid()
        if pid is None:
            return False
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and self._pid() is not None:
            time.sleep(0.3)
        if self._pid() is not None:
            os.kill(pid, signal.SIGKILL)
        self.pid_file.unlink(missing_ok=True)
        # The node removes its pid file early in its shutdown; it is gone once it stops listening,
        # and only then can a new node take the ports (a stop-then-start would find them in use).
        while time.monotonic() < deadline and (port_in_use(self.host, self.port) or
                                               port_in_use(self.host, self.transport_port)):
            time.sleep(0.2)
        return True

    def _node_user(self) -> str | None:
        """Under root, the unprivileged user that runs the node (created on first use)."""
        if os.geteuid() != 0:
            return None
        try:
            pwd.getpwnam(NODE_USER)
        except KeyError:
            subprocess.run(
                ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", NODE_USER],
                check=True, capture_output=True,
            )
        for parent in [*self.home.parents, *self.node_dir.parents]:
            if parent.exists() and not parent.stat().st_mode & stat.S_IXOTH:
                raise NodeError(
                    f"{parent} is not readable by the unprivileged user {NODE_USER} that runs the node; "
                    "set SHOPSEARCH_ES_CACHE_DIR and SHOPSEARCH_ES_VAR_DIR to folders outside it"
                )
        subprocess.run(["chown", "-R", f"{NODE_USER}:{NODE_USER}", str(self.node_dir)], check=True)
        return NODE_USER
