"""Print the import graph between the project's top-level rooms (folders), read with `ast`.

    python scripts/import_graph.py            # room -> rooms it imports, with the module edges' count
    python scripts/import_graph.py --modules  # module -> project modules it imports

Imports inside functions count too (a deferred import is still a dependency); tests/ and scripts/
are left out, being edges of their own. A cycle between rooms is printed at the end.
"""

from __future__ import annotations

import ast
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SKIP = {"tests", "scripts", ".venv", "var", "artifacts", ".cache", "docker", "docs", "proto"}


def project_modules() -> dict[str, Path]:
    modules: dict[str, Path] = {}
    for path in ROOT.rglob("*.py"):
        rel = path.relative_to(ROOT)
        if rel.parts[0] in SKIP or len(rel.parts) < 2 or rel.name.endswith("_pb2.py") or rel.name.endswith("_pb2_grpc.py"):
            continue
        name = ".".join(rel.with_suffix("").parts)
        modules[name.removesuffix(".__init__")] = path
    return modules


def imports_of(path: Path, module: str, known: set[str]) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parts + ([base] if base else []))
            submodules = [f"{base}.{alias.name}" for alias in node.names if f"{base}.{alias.name}" in known]
            # `from pkg import module` depends on the module; `from pkg import name` on pkg itself
            names = submodules + ([base] if len(submodules) < len(node.names) else [])
        for name in names:
            while name and name not in known:  # `from a.b import c` names a.b when c is no module
                name = name.rpartition(".")[0]
            if name and name != module:
                found.add(name)
    return found


def main() -> None:
    modules = project_modules()
    known = set(modules)
    edges = {m: imports_of(p, m, known) for m, p in sorted(modules.items())}
    if "--modules" in sys.argv:
        for m, targets in edges.items():
            if targets:
                print(f"{m} -> {', '.join(sorted(targets))}")
        return
    rooms: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for m, targets in edges.items():
        for t in targets:
            a, b = m.split(".")[0], t.split(".")[0]
            if a != b:
                rooms[a][b] += 1
    for a in sorted({m.split(".")[0] for m in modules}):
        out = rooms.get(a, {})
        print(f"{a:12} -> " + (", ".join(f"{b} ({n})" for b, n in sorted(out.items())) or "-"))
    cycles = sorted({tuple(sorted((a, b))) for a in rooms for b in rooms[a] if a in rooms.get(b, {})})
    print("room cycles: " + (", ".join(f"{a} <-> {b}" for a, b in cycles) or "none"))
    module_cycles = sorted({tuple(sorted((a, b))) for a in edges for b in edges[a] if a in edges.get(b, set())})
    print("module cycles: " + (", ".join(f"{a} <-> {b}" for a, b in module_cycles) or "none"))


if __name__ == "__main__":
    main()
