"""Pure functions: sizes, excludes, tlog editing, recipe names, link resolution."""

from __future__ import annotations

import pytest

from composer.rules.files import excluded
from composer.rules.greengrass import component_hash
from composer.rules.tlog import drop_lines, parse_tlog
from composer.tree import DeviceTree, Entry, Kind
from composer.units import SizeError, parse_size


@pytest.mark.parametrize("text,expected", [("64MiB", 64 << 20), ("64M", 64 << 20),
                                           ("512K", 512 << 10), ("1GiB", 1 << 30), (4096, 4096)])
def test_sizes(text: str | int, expected: int) -> None:
    assert parse_size(text) == expected


@pytest.mark.parametrize("text", ["12 parsecs", "-1", "1.5G", ""])
def test_bad_sizes(text: str) -> None:
    with pytest.raises(SizeError):
        parse_size(text)


def _e(path: str, kind: Kind = Kind.FILE) -> Entry:
    return Entry(path, kind, 0o644, 0, 0, 0)


def test_excludes_work_like_gitignore() -> None:
    assert excluded("a/b/x.log", _e("/x"), ("*.log",))
    assert excluded("cache", _e("/c", Kind.DIR), ("cache/",))
    assert not excluded("cache", _e("/c"), ("cache/",))
    assert excluded("a/b", _e("/x"), ("a/b",))
    assert not excluded("c/a/b", _e("/x"), ("a/b",))


def test_recipe_hash_matches_the_nucleus() -> None:
    # values from docs/greengrass.md §3, computed by the nucleus' own algorithm
    assert component_hash("aws.greengrass.Nucleus") == "89r1-ak7xPauDt4O7EG03sSXVUO8ysdHTk-YdF0NAAc"
    assert component_hash("aws.greengrass.nucleus") == "Q0IzWTIfnpwaJUNYrcFTc_eZNqDB4S266WiO2U1kRAo"


def test_tlog_strictness() -> None:
    good = b'{"TS":1,"TP":["system","rootpath"],"W":"changed","V":"/x"}\n'
    assert parse_tlog(good)[1] == []
    # key order does not matter to the nucleus (Jackson); an extra key or an unknown W does
    bad = (good + b"\n" + b'{"TP":[],"TS":1,"W":"changed","V":1,"X":0}\n'
           + b'{"TS":1,"TP":[],"W":"x","V":1}\n')
    problems = [n for n, _ in parse_tlog(bad)[1]]
    assert problems == [2, 3, 4]


def test_tlog_edit_keeps_other_lines_byte_identical() -> None:
    lines = [b'{"TS":1,"TP":["a"],"W":"changed","V":1}\n',
             b'{"TS":2,"TP":["Secret","x"],"W":"changed","V":"s"}\n',
             b'{"TS":3,"TP":["b"],"W":"changed","V":{"k":  "spaced"}}\n']
    out, gone = drop_lines(b"".join(lines), lambda line: line.key[0] == "secret")
    assert out == lines[0] + lines[2]
    assert [g.number for g in gone] == [2]


def test_resolve_inside_the_device_tree() -> None:
    tree = DeviceTree([
        Entry("/", Kind.DIR, 0o755, 0, 0, 0), Entry("/a", Kind.DIR, 0o755, 0, 0, 0),
        Entry("/a/cur", Kind.SYMLINK, 0o777, 0, 0, 0, target="/a/real"),
        Entry("/a/real", Kind.DIR, 0o755, 0, 0, 0),
        Entry("/a/real/f", Kind.FILE, 0o644, 0, 0, 0),
        Entry("/a/rel", Kind.SYMLINK, 0o777, 0, 0, 0, target="real/f"),
        Entry("/loop", Kind.SYMLINK, 0o777, 0, 0, 0, target="/loop"),
    ])
    assert tree.resolve("/a/cur/f") == "/a/real/f"
    assert tree.resolve("/a/rel") == "/a/real/f"
    assert tree.resolve("/a/missing") is None
    assert tree.resolve("/loop") is None
