"""The package's import structure: no import cycle (lazy imports inside functions count) and no
module reaching into another module's private names.

The graph is read from the source with ``ast``: ``import a.b`` is an edge to ``a.b``; ``from a import
n`` is an edge to ``a.n`` when that is a module, else to ``a`` (whose ``__init__`` defines ``n``). A
package's ``__init__`` being run on the way to a submodule is not an edge (Python's own mechanics).
"""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# the installed names of the source folders (setup.py maps kernels/ to elmo_fast.kernels)
SOURCES = {"elmo_fast": ROOT / "elmo_fast", "elmo_fast.kernels": ROOT / "kernels"}
COMPILED = {"elmo_fast._C", "elmo_fast._C_cuda"}


def module_files(sources: dict[str, Path]) -> dict[str, Path]:
    """Module name -> file, for every ``.py`` file under the source folders."""
    modules = {}
    for package, folder in sources.items():
        for path in folder.rglob("*.py"):
            parts = list(path.relative_to(folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            modules[".".join([package, *parts])] = path
    return modules


def _absolute(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    base = module.split(".")
    base = base if is_package else base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def import_graph(sources: dict[str, Path]) -> tuple[dict[str, set[str]], list[str]]:
    """The import edges between the modules, and every private name one module takes from another."""
    modules = module_files(sources)
    known = set(modules) | COMPILED
    edges: dict[str, set[str]] = {name: set() for name in modules}
    private: list[str] = []
    for name, path in modules.items():
        is_package = path.name == "__init__.py"
        module_aliases: dict[str, str] = {}
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name in known:
                        edges[name].add(alias.name)
                        module_aliases[alias.asname or alias.name] = alias.name
            elif isinstance(node, ast.ImportFrom):
                source = _absolute(name, is_package, node)
                if source not in known:
                    continue
                for alias in node.names:
                    target = f"{source}.{alias.name}"
                    if target in known:
                        edges[name].add(target)
                        module_aliases[alias.asname or alias.name] = target
                    else:
                        edges[name].add(source)
                        if alias.name.startswith("_") and not alias.name.startswith("__") and source != name:
                            private.append(f"{name} imports {alias.name} from {source}")
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in module_aliases:
                target = module_aliases[node.value.id]
                attr = node.attr
                if attr.startswith("_") and not attr.startswith("__") and f"{target}.{attr}" not in known:
                    private.append(f"{name} uses {target}.{attr}")
    for targets in edges.values():
        targets.discard("elmo_fast._C")
        targets.discard("elmo_fast._C_cuda")
    return edges, private


def find_cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected group of more than one module (or a module importing itself)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(edges.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                group.append(top)
                if top == node:
                    break
            if len(group) > 1 or node in edges.get(node, ()):
                groups.append(sorted(group))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return groups


def test_no_import_cycle_in_the_package():
    edges, _ = import_graph(SOURCES)
    assert len(edges) > 30, "the package's modules were not found"
    assert find_cycles(edges) == []


def test_no_module_takes_another_modules_private_names():
    _, private = import_graph(SOURCES)
    assert private == []


def test_the_checks_catch_a_cycle_and_a_private_import(tmp_path):
    package = tmp_path / "pkg"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("from pkg.a import run\n")
    (package / "a.py").write_text("def run():\n    from pkg.sub import b  # lazy, still an edge\n    return b\n")
    (package / "sub" / "__init__.py").write_text("")
    (package / "sub" / "b.py").write_text("from pkg.a import run\nfrom pkg.c import _helper\nimport pkg.c as c\nc._other()\n")
    (package / "c.py").write_text("def _helper():\n    pass\n\ndef _other():\n    pass\n")
    edges, private = import_graph({"pkg": package})
    assert find_cycles(edges) == [["pkg.a", "pkg.sub.b"]]
    assert private == ["pkg.sub.b imports _helper from pkg.c", "pkg.sub.b uses pkg.c._other"]
