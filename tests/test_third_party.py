"""composer uses third-party libraries through their public API only: no private attribute or
module (`archive._pointer`, `pf._fat_size`, `typer._click`), and no assignment to anything a
library owns (`DosDateTime.now = ...` patched pyfatfs for the whole process)."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.conftest import REPO

MODULES = sorted((REPO / "composer").rglob("*.py"))


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def _third_party_names(tree: ast.Module) -> set[str]:
    """Names bound by importing something that is not composer."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {(a.asname or a.name).split(".")[0] for a in node.names
                      if not a.name.startswith("composer")}
        elif isinstance(node, ast.ImportFrom) and not (node.module or "").startswith("composer") \
                and node.level == 0:
            names |= {a.asname or a.name for a in node.names}
    return names


def _base_name(node: ast.expr) -> str | None:
    while isinstance(node, ast.Attribute):
        node = node.value
    return node.id if isinstance(node, ast.Name) else None


def problems(path: Path, root: Path = REPO) -> list[str]:
    tree = ast.parse(path.read_text(), str(path))
    foreign = _third_party_names(tree)
    where = path.relative_to(root)
    found: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and _private(node.attr) \
                and _base_name(node.value) not in ("self", "cls"):
            found.append(f"{where}:{node.lineno}: private attribute {ast.unparse(node)}")
        if isinstance(node, ast.Import | ast.ImportFrom):
            module = node.module or "" if isinstance(node, ast.ImportFrom) else ""
            if not module.startswith("composer"):
                named = [module] if module else [a.name for a in node.names]
                if isinstance(node, ast.ImportFrom):
                    named += [a.name for a in node.names]
                for name in named:
                    if any(_private(part) for part in name.split(".")):
                        found.append(f"{where}:{node.lineno}: private import {name}")
        if isinstance(node, ast.Assign | ast.AugAssign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                if isinstance(target, ast.Attribute) and _base_name(target) in foreign:
                    found.append(f"{where}:{node.lineno}: assigns {ast.unparse(target)}, which "
                                 "a library owns")
    return found


def test_no_private_use_and_no_patching_of_libraries() -> None:
    assert len(MODULES) > 40  # really the package
    found = [p for path in MODULES for p in problems(path)]
    assert found == [], "\n".join(found)


def test_the_check_sees_what_it_forbids(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text(
        "from pyfatfs.DosDateTime import DosDateTime\n"
        "from typer._click import exceptions\n"
        "import libarchive\n"
        "DosDateTime.now = staticmethod(lambda tz=None: None)\n"
        "def f(archive, pf):\n"
        "    return archive._pointer, pf._fat_size, libarchive.ffi\n")
    found = problems(sample, tmp_path)
    assert len(found) == 4, found
    assert any("DosDateTime.now" in p for p in found)
    assert any("typer._click" in p for p in found)
    assert any("archive._pointer" in p for p in found)
    assert any("pf._fat_size" in p for p in found)
