"""The demo's background processes (the reranker, the page): start, health wait, stop, kill.

Each process runs in its own session with its output in `<stack_dir>/<name>.log` and a pid file
`<stack_dir>/<name>.pid` (JSON: pid and the command line). A pid file counts only while that pid
is alive *and* still runs the recorded command, so a stale file after a reboot never makes us
signal a stranger. Elasticsearch has its own runner (es_config/local_node.py).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from common.errors import ShopsearchError

RERANKER, WEB = "reranker", "web"


class StackError(ShopsearchError):
    """A background process that would not start or stop; the message is one line."""


@dataclass(frozen=True)
class Started:
    name: str
    pid: int
    already_running: bool
    seconds: float


def replica_name(index: int) -> str:
    """The stack name of reranker replica `index` (0: "reranker", as with one replica)."""
    return RERANKER if index == 0 else f"{RERANKER}-{index + 1}"


def shopsearch_argv(*args: str) -> list[str]:
    """The `shopsearch` command line run with this interpreter."""
    return [sys.executable, "-m", "searchstack", *args]


# -- health probes -----------------------------------------------------------------------------------

def reranker_serving(target: str, timeout_s: float = 1.0) -> bool:
    from reranker.client import RerankClient, RerankError

    with RerankClient(target) as client:
        try:
            return client.health(timeout=timeout_s) == "SERVING"
        except RerankError:
            return False


def reranker_version(target: str, timeout_s: float = 5.0) -> str:
    """The model version a reranker scores with (asked with a one-candidate request)."""
    from reranker.client import Candidate, RerankClient

    with RerankClient(target) as client:
        return client.rerank("version", [Candidate("version-probe", 1.0, 1)], timeout=timeout_s).model_version


def web_answering(url: str, timeout_s: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/healthz", timeout=timeout_s) as response:
            return response.status == 200
    except (OSError, ValueError):
        return False


# -- processes -----------------------------------------------------------------------------------------

class Stack:
    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)

    def pid_file(self, name: str) -> Path:
        return self.folder / f"{name}.pid"

    def log_file(self, name: str) -> Path:
        return self.folder / f"{name}.log"

    def _record(self, name: str) -> dict | None:
        try:
            record = json.loads(self.pid_file(name).read_text())
            pid = int(record["pid"])
        except (OSError, ValueError, KeyError, TypeError):
            return None
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            return None
        if [part.decode(errors="replace") for part in cmdline if part] != record.get("argv"):
            return None  # that pid now belongs to another program
        return record

    def replicas(self) -> list[str]:
        """The reranker replicas that have a pid file, "reranker" first."""
        names = [f.stem for f in self.folder.glob(f"{RERANKER}*.pid")]
        return sorted(names, key=lambda n: (n != RERANKER, int(n.rsplit("-", 1)[1]) if "-" in n else 0))

    def pid(self, name: str) -> int | None:
        record = self._record(name)
        return int(record["pid"]) if record else None

    def argv(self, name: str) -> list[str] | None:
        record = self._record(name)
        return record["argv"] if record else None

    def start(self, name: str, argv: list[str], ready: Callable[[], bool], timeout_s: float = 300.0,
              env: dict[str, str] | None = None, waiting: Callable[[float], None] | None = None) -> Started:
        """Start `argv` unless it already runs (same command line and `ready()`); wait until `ready()`.

        A process of that name running another command line is stopped first. `waiting(seconds)`
        is called about once a second while waiting (progress for the user).
        """
        began = time.monotonic()
        current = self._record(name)
        if current is not None:
            if current["argv"] == argv and ready():
                return Started(name, int(current["pid"]), True, time.monotonic() - began)
            self.stop(name)
        self.folder.mkdir(parents=True, exist_ok=True)
        log_path = self.log_file(name)
        with open(log_path, "ab") as log:
            log.write(f"\n--- {time.strftime('%Y-%m-%d %H:%M:%S')} {' '.join(argv)}\n".encode())
            log.flush()
            process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                       env={**os.environ, **(env or {})}, start_new_session=True)
        self.pid_file(name).write_text(json.dumps({"pid": process.pid, "argv": argv}))
        last_note = began
        while time.monotonic() - began < timeout_s:
            if process.poll() is not None:
                self.pid_file(name).unlink(missing_ok=True)
                raise StackError(f"{name} exited with code {process.returncode} while starting: "
                                 f"{self.last_line(name)} (log: {log_path})")
            if ready():
                settle = time.monotonic() + 5.0  # /proc shows the command line only once exec is done
                while self._record(name) is None and time.monotonic() < settle and process.poll() is None:
                    time.sleep(0.02)
                return Started(name, process.pid, False, time.monotonic() - began)
            if waiting and time.monotonic() - last_note >= 1.0:
                last_note = time.monotonic()
                waiting(last_note - began)
            time.sleep(0.25)
        self.stop(name)
        raise StackError(f"{name} was not ready within {timeout_s:.0f} s; see {log_path}")

    def last_line(self, name: str) -> str:
        try:
            lines = [line for line in self.log_file(name).read_text(errors="replace").splitlines() if line.strip()]
        except OSError:
            return "no log"
        return lines[-1].strip()[:300] if lines else "no output"

    def stop(self, name: str, timeout_s: float = 20.0) -> bool:
        """SIGTERM to the process group, SIGKILL after `timeout_s`; False when it was not running."""
        pid = self.pid(name)
        if pid is None:
            self.pid_file(name).unlink(missing_ok=True)
            return False
        self._signal(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and _alive(pid):
            time.sleep(0.1)
        if _alive(pid):
            self._signal(pid, signal.SIGKILL)
            _wait_gone(pid, 5.0)
        self.pid_file(name).unlink(missing_ok=True)
        return True

    def kill(self, name: str) -> bool:
        """SIGKILL, no grace: how the fault test takes the reranker away."""
        pid = self.pid(name)
        if pid is None:
            return False
        self._signal(pid, signal.SIGKILL)
        _wait_gone(pid, 5.0)
        self.pid_file(name).unlink(missing_ok=True)
        return True

    @staticmethod
    def _signal(pid: int, sig: signal.Signals) -> None:
        try:
            os.killpg(pid, sig)  # its own session: the group id is its pid
        except ProcessLookupError:
            pass
        except PermissionError:
            os.kill(pid, sig)


def _alive(pid: int) -> bool:
    try:
        # reap it if it is our child (the tests start processes from this one)
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return False
    except ChildProcessError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie is gone for our purposes
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][0] != "Z"
    except (OSError, IndexError):
        return False


def _wait_gone(pid: int, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and _alive(pid):
        time.sleep(0.05)
