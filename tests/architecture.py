"""The structure of harness/ read from its source (no imports run): the import graph with
function-level imports included, other modules' underscore names, and module/function sizes.

`python -m tests.architecture` prints every finding; tests/test_architecture.py asserts there are none.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "harness"
MAX_MODULE_LINES = 600
MAX_FUNCTION_LINES = 80


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


@dataclass
class Module:
    name: str
    path: Path
    tree: ast.Module
    imports: dict[str, int] = field(default_factory=dict)  # imported harness module -> first line
    private_uses: list[tuple[int, str]] = field(default_factory=list)  # (line, "module._name")


def _resolve(name: str, known: dict[str, Path]) -> str | None:
    """The harness module an import names: the longest known prefix of a dotted name."""
    while name:
        if name in known:
            return name
        name = name.rpartition(".")[0]
    return None


def _absolute(mod: str, node: ast.ImportFrom, is_package: bool) -> str:
    if not node.level:
        return node.module or ""
    base = mod.split(".")
    drop = node.level - 1 if is_package else node.level
    base = base[: len(base) - drop] if drop else base
    return ".".join(base + ([node.module] if node.module else []))


def parse(known: dict[str, Path] | None = None) -> dict[str, Module]:
    known = known or modules()
    out: dict[str, Module] = {}
    for name, path in known.items():
        m = Module(name, path, ast.parse(path.read_text(), str(path)))
        aliases: dict[str, str] = {}  # local name -> harness module, for `alias._private` uses
        for node in ast.walk(m.tree):
            if isinstance(node, ast.Import):
                for a in node.names:
                    target = _resolve(a.name, known)
                    if target and target != name:
                        m.imports.setdefault(target, node.lineno)
                        if a.asname:
                            aliases[a.asname] = target
            elif isinstance(node, ast.ImportFrom):
                base = _absolute(name, node, path.name == "__init__.py")
                for a in node.names:
                    sub = _resolve(f"{base}.{a.name}", known)
                    if sub and sub == f"{base}.{a.name}":  # `from harness import errors`: the submodule
                        target = sub
                        aliases[a.asname or a.name] = sub
                    else:
                        target = _resolve(base, known)
                        if target and a.name.startswith("_") and not a.name.startswith("__") and target != name:
                            m.private_uses.append((node.lineno, f"{target}.{a.name}"))
                    if target and target != name:
                        m.imports.setdefault(target, node.lineno)
        for node in ast.walk(m.tree):
            if (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name)
                and node.value.id in aliases
                and node.attr.startswith("_")
                and not node.attr.startswith("__")
            ):
                m.private_uses.append((node.lineno, f"{aliases[node.value.id]}.{node.attr}"))
        out[name] = m
    return out


def collapsed(graph: dict[str, Module]) -> dict[str, Module]:
    """The graph with each subpackage of harness (harness.spec, harness.data, ...) as one node: a
    cycle here is two parts of the tree that depend on each other through any of their modules."""

    def node(name: str) -> str:
        parts = name.split(".")
        sub = ".".join(parts[:2])
        return sub if len(parts) > 2 or (PACKAGE / parts[1] if len(parts) > 1 else PACKAGE).is_dir() else name

    out: dict[str, Module] = {}
    for m in graph.values():
        n = out.setdefault(node(m.name), Module(node(m.name), m.path, m.tree))
        for target, line in m.imports.items():
            if node(target) != n.name:
                n.imports.setdefault(node(target), line)
    return out


def cycles(graph: dict[str, Module]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph[v].imports:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    sys.setrecursionlimit(10000)
    for v in graph:
        if v not in index:
            visit(v)
    return sorted(found)


def long_functions(m: Module) -> Iterator[tuple[str, int]]:
    for node in ast.walk(m.tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            n = node.end_lineno - node.lineno + 1
            if n > MAX_FUNCTION_LINES:
                yield f"{m.name}.{node.name} (line {node.lineno})", n


def findings() -> dict[str, list[str]]:
    graph = parse()
    out: dict[str, list[str]] = {"cycles": [], "private": [], "long_modules": [], "long_functions": []}
    for comp in cycles(graph):
        out["cycles"].append(" <-> ".join(comp))
    for comp in cycles(collapsed(graph)):
        if " <-> ".join(comp) not in out["cycles"]:
            out["cycles"].append("(packages) " + " <-> ".join(comp))
    for m in graph.values():
        out["private"] += [f"{m.path.relative_to(ROOT)}:{line}: {use}" for line, use in m.private_uses]
        n = len(m.path.read_text().splitlines())
        if n > MAX_MODULE_LINES:
            out["long_modules"].append(f"{m.path.relative_to(ROOT)}: {n} lines")
        out["long_functions"] += [f"{name}: {n} lines" for name, n in long_functions(m)]
    return out


if __name__ == "__main__":
    result = findings()
    for kind, items in result.items():
        print(f"## {kind}: {len(items)}")
        for item in items:
            print("  " + item)
    sys.exit(1 if any(result.values()) else 0)
