"""Every README sentence that promises behaviour is pinned by at least one test: tests/promises.yaml
maps each promise to tests, and this test fails when the README has a promise without an entry,
or an entry names a test that does not exist (or no test at all).

What counts as a promise (the rule is mechanical, so a new promise cannot slip in unnoticed):

- every row of a table whose first column is headed `key` (the layout keys, the secret keys),
  keyed by the key names in its first cell, e.g. `key: partitions[].size`;
- every bullet (at any depth) and every paragraph of the sections that specify behaviour
  (Commands, Limits, The rules, Sources, Names are bytes, Outputs, Capturing a golden
  device, Known limits), keyed by
  section and first words, e.g. `bullet: Outputs: DIR/<partition>.tar for tar partitions: pax,`;
- every sentence of "Time, IDs and determinism", keyed the same way (`sentence: ...`);
- every other prose sentence that says `is an error`, `are errors`, `always`, `never` or `exit`
  (outside Tests and Performance, which describe the suite, not composer), keyed by its first
  words, e.g. `sentence: Exit codes: 0 ok; 1 layout, input`.

When the README changes, the failure prints skeleton entries for the new promises to paste into
promises.yaml (and the stale entries to drop)."""

from __future__ import annotations

import ast
import re
from functools import cache
from pathlib import Path

import yaml

from tests.conftest import REPO

README = REPO / "README.md"
TABLE = REPO / "tests" / "promises.yaml"
BLOCK_SECTIONS = ("Commands", "Limits", "The rules", "Preloading Docker images", "Sources",
                  "Names are bytes", "Outputs", "Capturing a golden device", "Known limits")
SENTENCE_SECTIONS = ("Time, IDs and determinism",)
SKIPPED_SECTIONS = ("Tests", "Performance")
PROMISE_WORDS = re.compile(r"\bis an error\b|\bare errors\b|\balways\b|\bnever\b|\bexit\b",
                           re.IGNORECASE)
WORDS = 7  # words of a bullet or sentence in its key: enough to tell them apart


def _plain(text: str) -> str:
    """Markdown reduced to words: no backticks, emphasis or link targets, one space."""
    text = re.sub(r"\[([^]]*)\]\([^)]*\)", r"\1", text)
    text = text.replace("`", "").replace("**", "").replace("*", "")
    return " ".join(text.split())


def _first_words(text: str) -> str:
    return " ".join(_plain(text).split()[:WORDS])


def _blocks(lines: list[str]) -> list[tuple[str, str, str]]:
    """(section, kind, text) of each prose block: kind is 'bullet', 'bold', 'row', 'header' or
    'para'; code blocks are left out, bullets carry their continuation lines."""
    blocks: list[tuple[str, str, str]] = []
    section, in_code = "", False
    for line in lines:
        if line.startswith("```"):
            in_code = not in_code
            continue
        if in_code:
            continue
        if line.startswith("#"):
            section = line.lstrip("#").strip()
            continue
        stripped = line.strip()
        if not stripped:
            blocks.append((section, "blank", ""))
            continue
        if stripped.startswith("|"):
            blocks.append((section, "row", stripped))
        elif re.match(r"^[-*] ", stripped):
            blocks.append((section, "bullet", stripped[2:]))
        elif stripped.startswith("**") and (not blocks or blocks[-1][1] == "blank"):
            blocks.append((section, "bold", stripped))
        elif blocks and blocks[-1][1] in ("bullet", "bold", "para"):
            sec, kind, text = blocks[-1]
            blocks[-1] = (sec, kind, text + " " + stripped)
        else:
            blocks.append((section, "para", stripped))
    return [b for b in blocks if b[1] != "blank"]


def _in(section: str, names: tuple[str, ...]) -> bool:
    return any(section.startswith(name) for name in names)


def _sentences(text: str) -> list[str]:
    return re.split(r"(?<=[.;])\s+(?=[A-Z`(])", _plain(text))


@cache
def readme_promises() -> dict[str, str]:
    """promise key -> its README text."""
    promises: dict[str, str] = {}
    key_table = False
    for section, kind, text in _blocks(README.read_text().splitlines()):
        if kind == "row":
            cells = [c.strip() for c in text.strip("|").split("|")]
            if set(cells[0]) <= set("-: "):
                continue  # the separator row
            if cells[0] == "key":
                key_table = True
                continue
            if key_table:
                promises[f"key: {_plain(cells[0])}"] = _plain(text)
            continue
        key_table = False
        if kind == "header" or _in(section, SKIPPED_SECTIONS):
            continue
        if _in(section, BLOCK_SECTIONS):
            promises[f"bullet: {section.split(' (')[0]}: {_first_words(text)}"] = _plain(text)
            continue
        for sentence in _sentences(text):
            if _in(section, SENTENCE_SECTIONS) or PROMISE_WORDS.search(sentence):
                promises[f"sentence: {_first_words(sentence)}"] = sentence
    return promises


@cache
def _tests_in(path: Path) -> frozenset[str]:
    tree = ast.parse(path.read_text())
    return frozenset(node.name for node in ast.walk(tree)
                     if isinstance(node, ast.FunctionDef) and node.name.startswith("test_"))


def _exists(node_id: str) -> bool:
    file, _, name = node_id.partition("::")
    path = REPO / file
    return path.is_file() and name.split("[")[0] in _tests_in(path)


def _skeleton(keys: list[str]) -> str:
    return "\n".join(f"{yaml.safe_dump({key: ['tests/FILE.py::test_NAME']}, width=1000).strip()}"
                     f"  # {readme_promises()[key][:80]}" for key in keys)


def test_every_readme_promise_has_a_test() -> None:
    table = yaml.safe_load(TABLE.read_text()) or {}
    promises = readme_promises()
    missing = [key for key in promises if key not in table]
    stale = [key for key in table if key not in promises]
    assert not missing and not stale, (
        f"{len(missing)} README promises have no entry in tests/promises.yaml; skeleton:\n"
        f"{_skeleton(missing)}\n\nentries whose promise is no longer in the README:\n"
        + "\n".join(stale))


def test_every_entry_names_existing_tests() -> None:
    table = yaml.safe_load(TABLE.read_text()) or {}
    bad = {key: [t for t in tests or [] if not _exists(t)] for key, tests in table.items()}
    empty = [key for key, tests in table.items() if not tests]
    assert not empty, f"entries without a test: {empty}"
    assert not any(bad.values()), {k: v for k, v in bad.items() if v}


def test_the_rule_finds_promises_of_each_kind() -> None:
    """The extraction itself: a README without these would be a broken rule, not a pass."""
    keys = readme_promises()
    kinds = {key.split(":")[0] for key in keys}
    assert kinds == {"key", "bullet", "sentence"}
    assert "key: partitions[].size" in keys or any(k.startswith("key: ") and "size" in k
                                                   for k in keys)
    assert sum(k.startswith("key: ") for k in keys) >= 30
    assert any("Exit codes" in k for k in keys)
