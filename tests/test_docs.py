"""The documents the code cites are in the repository: every `docs/...` reference in the code,
the tools, the tests and the README names a file in docs/, and every section it cites (§N) is a
heading of that file. No comment cites a document the repository does not have."""

from __future__ import annotations

import re
from pathlib import Path

from tests.conftest import REPO

DOCS = REPO / "docs"
# docs/NAME.md, then optionally "§A, §B" or "§A-B" (a range of top-level sections)
REFERENCE = re.compile(r"(?<![\w/.-])docs/([\w.-]+\.md)"
                       r"((?:[ ,]*§[0-9]+[a-z]?(?:\.[0-9]+)?(?:-[0-9]+)?)*)")
SECTION = re.compile(r"§([0-9]+[a-z]?(?:\.[0-9]+)?)(?:-([0-9]+))?")
# the fact sheets the code once cited without the repository having them
FOREIGN = re.compile(r"\b(ext4|flashing|greengrass|docker-store)-facts\b")


def _sources() -> list[Path]:
    files = [REPO / "README.md", *sorted(DOCS.glob("*.md"))]
    for folder in ("composer", "tools", "tests"):
        files += sorted((REPO / folder).rglob("*.py")) + sorted((REPO / folder).rglob("*.sh"))
    return files


def _headings(doc: Path) -> set[str]:
    return set(re.findall(r"^#{2,3} ([0-9]+[a-z]?(?:\.[0-9]+)?)\.? ", doc.read_text(), re.M))


def _references() -> list[tuple[str, str, list[str]]]:
    found = []
    for path in _sources():
        if path == Path(__file__):
            continue
        text = path.read_text(encoding="utf-8")
        for match in REFERENCE.finditer(text):
            sections = []
            for first, last in SECTION.findall(match.group(2)):
                sections.append(first)
                if last:
                    sections += [str(n) for n in range(int(first) + 1, int(last) + 1)]
            found.append((str(path.relative_to(REPO)), match.group(1), sections))
    return found


def test_every_docs_reference_resolves() -> None:
    refs = _references()
    assert len(refs) >= 20  # the code cites these documents throughout
    for where, name, sections in refs:
        doc = DOCS / name
        assert doc.is_file(), f"{where} cites docs/{name}, which does not exist"
        headings = _headings(doc)
        for section in sections:
            assert section in headings, f"{where} cites docs/{name} §{section}, not a heading"


def test_no_reference_to_documents_outside_the_repository() -> None:
    for path in _sources():
        if path == Path(__file__):
            continue
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            assert not FOREIGN.search(line), f"{path.relative_to(REPO)}:{number}: {line.strip()}"


def test_docs_index_lists_every_document() -> None:
    index = (DOCS / "README.md").read_text(encoding="utf-8")
    linked = set(re.findall(r"\]\(([\w.-]+\.md)\)", index))
    assert linked == {p.name for p in DOCS.glob("*.md")} - {"README.md"}
    for name in linked:
        assert (DOCS / name).is_file()
