"""The package's shape: a plain dependency order with no cycles, no import hidden
inside a function to dodge one, and argument parsing only in the command line."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "jaxmusic"

# The order, bottom to top: a module may import only modules of a lower
# rank (or, within one rank, modules that do not import it back: no cycles at all).
RANKS = {
    "jaxmusic.recipe": 0, "jaxmusic.workers": 0, "jaxmusic.config": 0, "jaxmusic.metrics": 0, "jaxmusic.xla": 0,
    "jaxmusic.data": 1, "jaxmusic.parallel": 1, "jaxmusic.frontend": 1,
    "jaxmusic.augment": 1,
    "jaxmusic.features": 2,
    "jaxmusic.models": 2, "jaxmusic.tasks": 2, "jaxmusic.checkpoint": 2, "jaxmusic.pretrained": 2,
    "jaxmusic.runs": 3, "jaxmusic.tagging": 3, "jaxmusic.generative": 3,
    "jaxmusic.steps": 4,
    "jaxmusic.lrfind": 5,
    "jaxmusic.evaluate": 5,
    "jaxmusic.train": 6,
    "jaxmusic.experiments": 7, "jaxmusic.baselines": 7,
    "jaxmusic.cli": 9,
}


def modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


def imports(path: Path, names: set[str]) -> tuple[set[str], list[tuple[int, str]]]:
    """(jaxmusic modules imported at module level, [(line, module)] imported inside functions)."""
    tree = ast.parse(path.read_text(), str(path))
    top, nested = set(), []

    def targets(node) -> list[str]:
        if isinstance(node, ast.Import):
            return [a.name for a in node.names]
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            base = node.module
            return [f"{base}.{a.name}" if f"{base}.{a.name}" in names else base for a in node.names]
        return []

    def visit(node, in_function: bool):
        for child in ast.iter_child_nodes(node):
            inside = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            for t in targets(child):
                if t.split(".")[0] == "jaxmusic":
                    (nested.append((child.lineno, t)) if inside else top.add(t))
            visit(child, inside)

    visit(tree, False)
    return top, nested


def rank(name: str) -> int | None:
    best = None
    for prefix, r in RANKS.items():
        if name == prefix or name.startswith(prefix + "."):
            if best is None or len(prefix) > len(best[0]):
                best = (prefix, r)
    return None if best is None else best[1]


def graph() -> dict[str, set[str]]:
    mods = modules()
    names = set(mods)
    g = {}
    for name, path in mods.items():
        top, _ = imports(path, names)
        g[name] = {t for t in top if t in names and t != name}
    return g


def cycles(g: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def strongconnect(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in g.get(v, ()):
            if w not in index:
                strongconnect(w)
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
                found.append(sorted(comp))

    for v in list(g):
        if v not in index:
            strongconnect(v)
    return found


def test_no_import_cycles():
    assert cycles(graph()) == []


def test_imports_go_down_the_layers():
    bad = []
    for name, deps in graph().items():
        r = rank(name)
        if r is None:
            continue
        for d in deps:
            rd = rank(d)
            if rd is not None and rd > r:
                bad.append(f"{name} (layer {r}) imports {d} (layer {rd})")
    assert bad == []


def test_no_jaxmusic_import_inside_a_function():
    mods = modules()
    found = []
    for name, path in mods.items():
        _, nested = imports(path, set(mods))
        found += [f"{path.relative_to(PACKAGE.parent)}:{line}: {t}" for line, t in nested]
    assert found == []


def test_argparse_only_in_the_command_line():
    found = []
    for name, path in modules().items():
        if name == "jaxmusic.cli" or name.startswith("jaxmusic.cli."):
            continue
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import) and any(a.name == "argparse" for a in node.names):
                found.append(name)
            if isinstance(node, ast.ImportFrom) and node.module == "argparse":
                found.append(name)
            if isinstance(node, ast.FunctionDef) and node.name == "add_arguments":
                found.append(f"{name}.add_arguments")
    assert found == []


def test_the_checker_sees_a_cycle_and_a_hidden_import(tmp_path):
    """The checks above can fail: run them on a small package that breaks each rule."""
    pkg = tmp_path / "jaxmusic"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from jaxmusic import b\n")
    (pkg / "b.py").write_text("import jaxmusic.a\n\ndef f():\n    from jaxmusic import a\n")
    names = {"jaxmusic", "jaxmusic.a", "jaxmusic.b"}
    top_a, _ = imports(pkg / "a.py", names)
    top_b, nested_b = imports(pkg / "b.py", names)
    assert top_a == {"jaxmusic.b"} and top_b == {"jaxmusic.a"}
    assert nested_b == [(4, "jaxmusic.a")]
    assert cycles({"jaxmusic.a": top_a, "jaxmusic.b": top_b}) == [["jaxmusic.a", "jaxmusic.b"]]
    assert cycles({"jaxmusic.a": {"jaxmusic.b"}, "jaxmusic.b": set()}) == []
