"""Under root, the node's folders are ones its unprivileged user can enter (no node is started)."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

from es_config.local_node import LocalNode, node_folders

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the node user exists only under root")


def node(cache_dir: Path, var_dir: Path) -> LocalNode:
    return LocalNode(version="8.19.21", host="127.0.0.1", port=9251, heap="512m", cache_dir=cache_dir, var_dir=var_dir)


def test_a_closed_checkout_gets_folders_under_var_tmp(tmp_path: Path) -> None:
    home = tmp_path / "root-home"
    (home / "shopsearch").mkdir(parents=True)
    home.chmod(0o700)  # root's own home: others cannot enter
    cache, var = home / "shopsearch" / ".cache" / "elasticsearch", home / "shopsearch" / "var"
    first = node(cache, var)
    base = Path("/var/tmp") / f"shopsearch-{os.getuid()}"
    assert first.cache_dir.parent == base and first.cache_dir.name.startswith("elasticsearch-")
    assert first.var_dir.parent == base and first.var_dir.name.startswith("var-")
    assert base.stat().st_mode & 0o005 == 0o005  # the node user can enter it
    # the same checkout always maps to the same folders (so `es stop` finds what `es start` began)
    again = node(cache, var)
    assert (again.cache_dir, again.var_dir, again.node_dir) == (first.cache_dir, first.var_dir, first.node_dir)
    other = node(home / "elsewhere" / "cache", home / "elsewhere" / "var")
    assert other.var_dir != first.var_dir


def test_open_folders_are_kept() -> None:
    open_dir = Path(tempfile.mkdtemp(prefix="shopsearch-open-", dir="/tmp"))  # pytest's tmp_path is 0700
    try:
        open_dir.chmod(0o755)
        cache, var = open_dir / "cache", open_dir / "var"
        assert node_folders(cache, var) == (cache, var)
        assert (node(cache, var).cache_dir, node(cache, var).var_dir) == (cache, var)
    finally:
        shutil.rmtree(open_dir)
