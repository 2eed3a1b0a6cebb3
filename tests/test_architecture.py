"""The house's shape: no import cycle anywhere in ``src/pyweaver`` (the room rules of
DESIGN §4 are the import-linter contracts in pyproject.toml, run by ``make test``)."""

from __future__ import annotations

import grimp


def strongly_connected(graph: grimp.ImportGraph, modules: set[str]) -> list[list[str]]:
    """Tarjan's algorithm over the direct imports among ``modules``: every group of
    two or more modules that import each other, directly or around a circle."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        on_stack.add(module)
        for imported in graph.find_modules_directly_imported_by(module) & modules:
            if imported not in index:
                visit(imported)
                low[module] = min(low[module], low[imported])
            elif imported in on_stack:
                low[module] = min(low[module], index[imported])
        if low[module] == index[module]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == module:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for module in sorted(modules):
        if module not in index:
            visit(module)
    return groups


def package_graph() -> tuple[grimp.ImportGraph, set[str]]:
    graph = grimp.build_graph("pyweaver", cache_dir=None)
    # A package's __init__ re-exporting its own modules is not a cycle of the house.
    modules = {m for m in graph.modules if m.startswith("pyweaver.")}
    return graph, modules


def test_no_import_cycle_inside_pyweaver() -> None:
    graph, modules = package_graph()
    for package in {m.rsplit(".", 1)[0] for m in modules} | {"pyweaver"}:
        for module in graph.find_children(package) if package in graph.modules else ():
            # Drop the package -> child edges: `from pkg._x import Y as Y` in an
            # __init__ is how a package declares its surface, not a dependency.
            if graph.direct_import_exists(importer=package, imported=module):
                graph.remove_import(importer=package, imported=module)
    assert strongly_connected(graph, modules) == []


def test_the_cycle_finder_finds_a_cycle() -> None:
    graph = grimp.ImportGraph()
    for name in ("p", "p.a", "p.b", "p.c"):
        graph.add_module(name)
    graph.add_import(importer="p.a", imported="p.b")
    graph.add_import(importer="p.b", imported="p.a")
    graph.add_import(importer="p.c", imported="p.a")
    assert strongly_connected(graph, {"p.a", "p.b", "p.c"}) == [["p.a", "p.b"]]
