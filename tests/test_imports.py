"""Imports point one way: cli → build → rules/route → disk → outputs → layout loading → registry →
fs → sources → core values, and never in a circle.

Each module's imports are read with `ast` (every import, also those inside functions: a lazy
import is still a dependency). A module may import from its own group (the longest prefix listed
below that names it) or from any group of a later layer; nothing else. Edges are the modules named
by the import statements (`from composer.fs.ext4 import xattr` is an edge to
composer.fs.ext4.xattr), not the package __init__ files Python runs on the way.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.conftest import REPO

# top to bottom; each tuple is one layer of groups (module-name prefixes)
LAYERS: tuple[tuple[str, ...], ...] = (
    ("composer.__main__",),
    ("composer.cli",),
    ("composer.personalize",),  # per-device builds on top of the golden one, and their patches
    ("composer.build",),
    # checks of finished builds (verify, diff, reproduce) and the manifest's provenance
    ("composer.rules", "composer.route", "composer.publish", "composer.check"),
    ("composer.disk.compose",),  # writes disk.img and its own outputs
    ("composer.outputs",),  # bmap, simg, zst, manifest of any image
    # validates writer options (above the registry); the key table names the disk formats' values
    ("composer.layout.load", "composer.layout.reference"),
    ("composer.layout.settings",),
    ("composer.registry",),  # the tables of formats and source kinds: where fs/sources are wired
    # the formats: file systems, partition tables, container image archives
    ("composer.fs", "composer.disk", "composer.docker"),
    ("composer.sources",),
    # core values
    ("composer.layout.model", "composer.layout.yamlload", "composer.report", "composer.content",
     "composer.acl", "composer.archive_ffi"),
    # parallel: forked child processes (partitions, digests, the sources' hashing)
    ("composer.tree", "composer.units", "composer.types", "composer.structs", "composer.tools",
     "composer.sparse", "composer.parallel"),
    ("composer.errors", "composer.layout", "composer"),  # the two packages: docstring, version
)


def module_name(path: Path) -> str:
    rel = path.relative_to(REPO).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


MODULES = {module_name(p): p for p in sorted((REPO / "composer").rglob("*.py"))}


def group_of(module: str) -> tuple[int, str]:
    """(layer index, group) of a module: its longest listed prefix."""
    best: tuple[int, str] | None = None
    for layer, groups in enumerate(LAYERS):
        for group in groups:
            if (module == group or module.startswith(group + ".")) and \
                    (best is None or len(group) > len(best[1])):
                best = (layer, group)
    if best is None:
        raise AssertionError(f"{module} is in no layer of tests/test_imports.py: add it")
    return best


def imports_of(module: str, path: Path) -> set[str]:
    """The composer modules `module` imports."""
    tree = ast.parse(path.read_text(), str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the package up
                up = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*up, base] if base else up)
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                found.add(sub if sub in MODULES else base)
    return {m for m in found if m in MODULES}


GRAPH = {m: imports_of(m, p) for m, p in MODULES.items()}


def wrong_way(graph: dict[str, set[str]]) -> list[str]:
    found = []
    for module, targets in sorted(graph.items()):
        layer, group = group_of(module)
        for target in sorted(targets):
            t_layer, t_group = group_of(target)
            if t_group != group and t_layer <= layer:
                found.append(f"{module} imports {target}: {t_group} is not below {group}")
    return found


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every import circle, each as the path that closes it (depth-first search)."""
    found: list[list[str]] = []
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(module: str) -> None:
        state[module] = 1
        path.append(module)
        for target in sorted(graph.get(module, ())):
            if state.get(target) == 1:
                found.append(path[path.index(target):] + [target])
            elif target not in state:
                visit(target)
        path.pop()
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module)
    return found


def test_every_module_has_a_layer() -> None:
    assert len(MODULES) > 40
    for module in MODULES:
        group_of(module)


def test_imports_point_down() -> None:
    problems = wrong_way(GRAPH)
    assert problems == [], "\n".join(problems)


def test_no_import_cycles() -> None:
    found = cycles(GRAPH)
    assert found == [], "\n".join(" → ".join(c) for c in found)


@pytest.mark.parametrize("edge", [
    ("composer.disk.compose", "composer.outputs.bmap", True),  # down: fine
    ("composer.disk.gpt", "composer.outputs.bmap", False),  # a table format using an output
    ("composer.layout.load", "composer.rules.greengrass", False),  # the old layout → rules
    ("composer.route", "composer.rules.assembly", False),  # the old route → rules (Claim)
    ("composer.disk.assemble", "composer.layout.model", True),  # model is a core value
    ("composer.fs.base", "composer.registry", False),  # an interface importing its registry
])
def test_the_check_sees_wrong_ways(edge: tuple[str, str, bool]) -> None:
    source, target, allowed = edge
    assert (wrong_way({source: {target}}) == []) is allowed


def test_the_check_sees_cycles() -> None:
    graph = {"composer.fs.base": {"composer.fs.ext4"}, "composer.fs.ext4": {"composer.fs.base"}}
    assert cycles(graph) == [["composer.fs.base", "composer.fs.ext4", "composer.fs.base"]]
