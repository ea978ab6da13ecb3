"""The house rules: no import circle, no private name borrowed from another module, and a query
that loads only the query path (never the writers in edgerec.update or the tools in edgerec.tools)."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("edgerec", "export")


def module_files() -> dict[str, Path]:
    files = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            files[".".join(parts)] = path
    return files


def imports_of(name: str, path: Path, known: set[str]) -> list[tuple[str, str]]:
    """(module imported, name taken from it) for every import in the file, at any depth."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [(alias.name, "") for alias in node.names if alias.name in known]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            for alias in node.names:
                if f"{source}.{alias.name}" in known:  # `from . import module`
                    found.append((f"{source}.{alias.name}", ""))
                elif source in known:
                    found.append((source, alias.name))
    return found


def import_graph() -> tuple[dict[str, set[str]], list[str]]:
    files = module_files()
    graph: dict[str, set[str]] = {name: set() for name in files}
    borrowed = []
    for name, path in files.items():
        for source, taken in imports_of(name, path, set(files)):
            graph[name].add(source)
            if taken.startswith("_") and not taken.startswith("__") and source != name:
                borrowed.append(f"{name} imports {taken} from {source}")
    return graph, borrowed


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in graph[node]:
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in graph:
        if node not in index:
            visit(node)
    return found


def test_no_module_imports_itself_through_others() -> None:
    graph, _ = import_graph()
    assert {"edgerec.recommender", "edgerec.update.store", "export.stages.pipeline"} <= set(graph)
    assert "edgerec.bundle.reader" in graph["edgerec.recommender"]  # the graph sees imports at all
    assert cycles(graph) == []


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_private_name_is_imported_from_another_module() -> None:
    assert import_graph()[1] == []


def test_the_build_stage_only_builds_on_its_stages() -> None:
    graph, _ = import_graph()
    upward = sorted(f"{a} -> {b}" for a, targets in graph.items() if a.startswith("export.stages")
                    for b in targets if b.startswith("export.measure"))
    assert upward == []


def test_a_query_loads_only_the_query_path(tiny_bundle: Path) -> None:
    script = (
        "import json, sys\n"
        "import edgerec\n"
        "rec = edgerec.Recommender.load(sys.argv[1])\n"
        "rec.query('space alien movie', k=3)\n"
        "rec.recommend([rec.items.records[0][rec.items.id_field]], k=3)\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    done = subprocess.run([sys.executable, "-c", script, str(tiny_bundle)], capture_output=True, text=True,
                          cwd=ROOT, timeout=120)
    assert done.returncode == 0, done.stderr
    loaded = json.loads(done.stdout)
    assert "edgerec.recommender" in loaded
    heavy = [m for m in loaded if m.startswith(("edgerec.update", "edgerec.tools", "edgerec.cli", "export",
                                                "torch", "transformers", "click"))]
    assert heavy == []


@pytest.mark.parametrize("package", ["edgerec.update", "edgerec.tools"])
def test_nothing_on_the_query_path_imports_the_writers_or_tools(package: str) -> None:
    graph, _ = import_graph()
    # The Ray encoding job is a build step, like `edgerec build`: it checks the catalogue as the build does.
    query_path = [m for m in graph if m.startswith("edgerec") and not m.startswith(("edgerec.update", "edgerec.tools"))
                  and m not in ("edgerec.cli", "edgerec.__main__", "edgerec.scale.encode_job")]
    assert [f"{m} -> {t}" for m in query_path for t in graph[m] if t.startswith(package)] == []
