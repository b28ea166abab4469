"""The packages' import graph, read from the source with ast: no circles (lazy imports inside
functions count too), the layering adafactor <- models, data <- experiments <- reproduce, and no
private name imported across packages."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("adafactor", "models", "data", "experiments", "reproduce")
# Which project packages each package may import (besides itself).
ALLOWED = {
    "adafactor": set(),
    "models": {"adafactor"},
    "data": set(),
    "experiments": {"adafactor", "models", "data"},
    "reproduce": {"adafactor", "models", "data", "experiments"},
}


def _modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            parts = list(path.relative_to(REPO).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


def _imports(path: Path, name: str, modules: dict[str, Path]) -> list[tuple[str, list[str]]]:
    """(imported project module, names taken from it) for every import statement in the file."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    edges = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            edges += [(a.name, []) for a in node.names if a.name in modules]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            names = [a.name for a in node.names]
            submodules = [f"{base}.{n}" for n in names if f"{base}.{n}" in modules]
            if submodules:
                edges += [(m, []) for m in submodules]
            elif base in modules:
                edges.append((base, names))
    return edges


def _graph() -> tuple[dict[str, set[str]], dict[str, list[tuple[str, list[str]]]]]:
    modules = _modules()
    raw = {name: _imports(path, name, modules) for name, path in modules.items()}
    graph = {name: {m for m, _ in edges if m != name} for name, edges in raw.items()}
    return graph, raw


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph[node]:
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_checker_finds_a_circle() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_circles() -> None:
    graph, _ = _graph()
    assert len(graph) > 50  # the walk saw the project
    assert _cycles(graph) == []


@pytest.mark.parametrize("package", PACKAGES)
def test_each_package_imports_only_the_layers_below_it(package: str) -> None:
    graph, _ = _graph()
    wrong = sorted(
        f"{module} -> {target}"
        for module, targets in graph.items() if module.split(".")[0] == package
        for target in targets
        if target.split(".")[0] != package and target.split(".")[0] not in ALLOWED[package]
    )
    assert wrong == []


def test_no_private_name_is_imported_across_packages() -> None:
    _, raw = _graph()
    wrong = []
    for module, edges in raw.items():
        for target, names in edges:
            if target.split(".")[0] == module.split(".")[0]:
                continue
            private = [n for n in names if n.startswith("_")]
            if private or any(part.startswith("_") for part in target.split(".")):
                wrong.append(f"{module} -> {target} {private}")
    assert wrong == []


def test_only_the_entry_point_imports_the_cli() -> None:
    """reproduce/cli.py parses and dispatches: nothing it dispatches to comes back to it."""
    graph, _ = _graph()
    assert sorted(m for m, targets in graph.items() if "reproduce.cli" in targets) == [
        "reproduce.__main__"]


def test_a_cell_imports_no_bleu_or_corpus_generator_before_its_first_step() -> None:
    """Importing experiments.run.cell loads neither sacreBLEU (used at evaluation) nor the embedded
    corpus's generator (used only when a binarized cache is built): both are imported where used."""
    import os
    import subprocess
    import sys

    deferred = ("sacrebleu", "data.embedded")
    code = ("import sys, experiments.run.cell; "
            f"print(','.join(m for m in {deferred!r} if m in sys.modules))")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=300, check=True)
    assert done.stdout.strip() == ""
