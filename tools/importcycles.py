"""Import cycles among syncd's modules, found from the source (nothing is imported).

    python tools/importcycles.py            # module-level imports only
    python tools/importcycles.py --all      # also imports inside functions

Prints each strongly connected component of more than one module (Tarjan), largest
first, and exits 1 if there is any. `from syncd.pkg import name` counts as an import
of `syncd.pkg.name` when that is a module, else of `syncd.pkg`. As in import-linter, an
import of `syncd.pkg.mod` is an edge to that module only, not to `syncd.pkg` (whose
`__init__` Python also runs): a package that gathers its own modules is not a cycle.
"""

from __future__ import annotations

import argparse
import ast
import sys
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "syncd"


def modules(root: Path = ROOT) -> dict[str, Path]:
    """Every module of the package by dotted name (a package by its `__init__`)."""
    found = {}
    for path in sorted((root / PACKAGE).rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def _top_level(tree: ast.Module) -> Iterator[ast.stmt]:
    """Statements run at import: the module body, into `if`/`try` but not into
    functions, classes' methods, or `if TYPE_CHECKING:`."""
    stack: list[ast.stmt] = list(tree.body)
    while stack:
        node = stack.pop()
        yield node
        if isinstance(node, ast.If):
            if isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
                continue
            stack += node.body + node.orelse
        elif isinstance(node, ast.Try):
            stack += node.body + node.orelse + node.finalbody
            for handler in node.handlers:
                stack += handler.body
        elif isinstance(node, ast.ClassDef):
            stack += [n for n in node.body if not isinstance(n, ast.FunctionDef)]


def _type_checking_only(tree: ast.Module) -> set[int]:
    skip: set[int] = set()
    for node in ast.walk(tree):
        test = getattr(node, "test", None)
        if isinstance(node, ast.If) and isinstance(test, ast.Name) and test.id == "TYPE_CHECKING":
            for inner in node.body:
                skip.update(id(n) for n in ast.walk(inner))
    return skip


def imports(name: str, path: Path, known: set[str], *, all_imports: bool) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    is_package = path.name == "__init__.py"
    if all_imports:
        skip = _type_checking_only(tree)
        nodes = [n for n in ast.walk(tree) if id(n) not in skip]
    else:
        nodes = list(_top_level(tree))
    targets: set[str] = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = name.split(".")
                if not is_package:
                    anchor = anchor[:-1]
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                targets.add(sub if sub in known else base)
    edges = set()
    for target in targets:
        parts = target.split(".")
        for i in range(len(parts), 0, -1):
            prefix = ".".join(parts[:i])
            if prefix in known:
                if prefix != name:
                    edges.add(prefix)
                break
    return edges


def graph(*, all_imports: bool, root: Path = ROOT) -> dict[str, set[str]]:
    found = modules(root)
    known = set(found)
    return {n: imports(n, p, known, all_imports=all_imports) for n, p in found.items()}


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's strongly connected components with more than one member, largest first."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []
    sys.setrecursionlimit(max(10_000, sys.getrecursionlimit()))

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
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return sorted(components, key=lambda c: (-len(c), c))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--all", action="store_true", help="count imports inside functions")
    args = parser.parse_args()
    found = cycles(graph(all_imports=args.all))
    kind = "all imports" if args.all else "module-level imports"
    print(f"{len(found)} import cycle(s) among {PACKAGE}/ ({kind})")
    for component in found:
        print(f"  {len(component)} modules: {', '.join(component)}")
    return 1 if found else 0


if __name__ == "__main__":
    raise SystemExit(main())
