"""A static walk over the imports of fusedops and fusedops.kernels (with `ast`, importing none
of their modules), for tests/test_imports.py. Every import statement counts, at module level or
inside a function: a lazy import that closes a circle is still a circle (two modules that
cannot be read, tested or moved one without the other).
"""
from __future__ import annotations

import ast
import functools
import importlib.util
from pathlib import Path

APPS = ("fusedops.apps", "fusedops.__main__")
ADAPTERS = ("fusedops.torch", "fusedops.sklearn", "fusedops.distributed")
EXTENSIONS = ("fusedops._fusedops_c",)  # built by cffi: a module, though not a .py file


def _within(name: str, prefixes) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def layer(name: str) -> str:
    if _within(name, APPS):
        return "apps"
    if _within(name, ADAPTERS):
        return "adapter"
    return "core"


def package_modules() -> dict:
    """{module name: (path, is_package)} for every .py file of fusedops and fusedops.kernels."""
    out = {}
    for pkg in ("fusedops", "fusedops.kernels"):
        root = Path(importlib.util.find_spec(pkg).submodule_search_locations[0])
        for path in sorted(root.rglob("*.py")):
            parts = [pkg, *path.relative_to(root).with_suffix("").parts]
            is_pkg = parts[-1] == "__init__"
            if is_pkg:
                parts.pop()
            out[".".join(parts)] = (path, is_pkg)
    return out


def _is_module(name: str, modules) -> bool:
    return name in modules or name in EXTENSIONS or name in ADAPTERS


def _absolute(module: str | None, level: int, importer: str, is_pkg: bool) -> str:
    if level == 0:
        return module
    base = importer.split(".")
    base = base[:len(base) - (level - 1)] if is_pkg else base[:len(base) - level]
    return ".".join(base + ([module] if module else []))


@functools.lru_cache(maxsize=None)
def _parse(path: Path) -> ast.Module:
    return ast.parse(path.read_text(), str(path))


def import_statements(name: str, path: Path, is_pkg: bool, modules):
    """Every import statement in `name`'s source, anywhere (module level, functions, classes):
    (line, [(imported name, module it imports)]). `from X import Y` is an import of X.Y when
    that is a module, else of X (Y is a name defined in X)."""
    for node in ast.walk(_parse(path)):
        if isinstance(node, ast.Import):
            yield node.lineno, [(a.name, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = _absolute(node.module, node.level, name, is_pkg)
            yield node.lineno, [(a.name, f"{base}.{a.name}" if _is_module(f"{base}.{a.name}", modules)
                                 else base) for a in node.names]


def imports_of(name: str, path: Path, is_pkg: bool, modules) -> set:
    """The fusedops modules that `name` imports anywhere in its source."""
    found = {target for _, pairs in import_statements(name, path, is_pkg, modules)
             for _, target in pairs if target == "fusedops" or target.startswith("fusedops.")}
    found.discard(name)
    return found


def import_graph() -> dict:
    modules = package_modules()
    return {name: imports_of(name, path, is_pkg, modules) for name, (path, is_pkg) in modules.items()}


def find_cycles(graph: dict) -> list:
    """Every strongly connected component with more than one module (Tarjan), each as a sorted
    list of module names."""
    index, low, stack, on_stack, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def layer_violations(graph: dict) -> list:
    """(importer, imported) pairs that break the layering."""
    bad = []
    for src, targets in graph.items():
        for dst in targets:
            s, d = layer(src), layer(dst)
            if d == "apps" and s != "apps":
                bad.append((src, dst))
            elif d == "adapter" and s != "apps" and dst.split(".")[:2] != src.split(".")[:2]:
                bad.append((src, dst))
    return sorted(bad)




def moved_imports(modules: dict, moved: dict) -> list:
    """Imports of a name from the module it moved out of: moved = {old module: {name: new
    module}}. Returns "module:line: from OLD import NAME -> from NEW import NAME" lines."""
    out = []
    for name, (path, is_pkg) in sorted(modules.items()):
        for line, pairs in import_statements(name, path, is_pkg, modules):
            for alias, target in pairs:
                new = moved.get(target, {}).get(alias)
                if new:
                    out.append(f"{name}:{line}: from {target} import {alias} -> from {new} import {alias}")
    return out
