"""The tlog reader, line by line, as the nucleus reads it (README "Checks": a JSON object with no
keys but TS, TP, W, V in any order, missing ones taking Jackson's defaults, W one of the seven
WhatHappened values; an error says which line and why). Written from the nucleus's Tlogline
and WhatHappened, not from composer's constants; these cases killed mutants that
tools/mutate.sh found surviving in composer/rules/tlog.py."""

from __future__ import annotations

import json

import pytest

from composer.rules.tlog import drop_lines, effective, parse_tlog

# aws-greengrass-nucleus config/WhatHappened.java
WHAT_HAPPENED = ["changed", "initialized", "childChanged", "removed", "childRemoved",
                 "timestampUpdated", "interiorAdded"]


def _line(**fields: object) -> bytes:
    return (json.dumps(fields, separators=(",", ":")) + "\n").encode()


@pytest.mark.parametrize("action", WHAT_HAPPENED)
def test_every_value_the_nucleus_knows_is_read(action: str) -> None:
    lines, problems = parse_tlog(_line(TS=5, TP=["a", "B"], W=action, V=1))
    assert problems == []
    assert [(ln.number, ln.ts, ln.path, ln.action, ln.value, ln.key) for ln in lines] == \
        [(1, 5, ("a", "B"), action, 1, ("a", "b"))]


@pytest.mark.parametrize("raw, problem", [
    (b"\n", "blank line"),
    (b"   \n", "blank line"),
    (b"{not json\n", "not JSON (JSONDecodeError)"),
    (b"\xff\xfe\n", "not JSON (UnicodeDecodeError)"),
    (b"[1, 2]\n", "not a JSON object but list"),
    (b"\"text\"\n", "not a JSON object but str"),
    (b'{"TS":1,"TP":["a"],"W":"changed","V":1,"X":2}\n',
     "unknown key 'X' (the nucleus reads only TS, TP, W and V)"),
    (b'{"TS":true,"TP":["a"],"W":"changed"}\n', "TS is not an integer"),
    (b'{"TS":"1","TP":["a"],"W":"changed"}\n', "TS is not an integer"),
    (b'{"TS":1,"TP":"a","W":"changed"}\n', "TP is not a list of strings"),
    (b'{"TS":1,"TP":["a",2],"W":"changed"}\n', "TP is not a list of strings"),
    (b'{"TS":1,"TP":["a"],"W":"Changed"}\n',
     "W 'Changed' is not one of " + ", ".join(WHAT_HAPPENED)),
])
def test_a_line_the_nucleus_refuses_is_named_with_why(raw: bytes, problem: str) -> None:
    good = _line(TS=1, TP=["x"], W="changed", V=0)
    lines, problems = parse_tlog(good + raw + good)
    assert problems == [(2, problem)]
    assert [ln.number for ln in lines] == [1, 3]


def test_missing_keys_take_jacksons_defaults_and_order_does_not_matter() -> None:
    lines, problems = parse_tlog(b'{"W":"removed","TP":["a"]}\n{"V":3,"W":"changed","TS":2,'
                                 b'"TP":["b"]}\n{}\n')
    assert problems == []
    assert [(ln.ts, ln.path, ln.action, ln.value) for ln in lines] == [
        (0, ("a",), "removed", None), (2, ("b",), "changed", 3), (0, (), "", None)]


def test_lines_keep_their_bytes_and_edits_drop_whole_lines() -> None:
    data = (_line(TS=1, TP=["keep"], W="changed", V="x") + b'{"TS":2, "TP":["Gone"],'
            b' "W":"changed", "V":"y"}\r\n' + b"broken\n" + _line(TS=3, TP=["keep2"], W="changed"))
    lines, _ = parse_tlog(data)
    assert [ln.raw for ln in lines] == [data.splitlines(keepends=True)[i] for i in (0, 1, 3)]
    kept, gone = drop_lines(data, lambda ln: ln.key == ("gone",))
    assert kept == data.replace(data.splitlines(keepends=True)[1], b"")
    assert [ln.number for ln in gone] == [2]


def test_effective_values_newest_timestamp_wins_and_removed_clears_older() -> None:
    data = b"".join([
        _line(TS=5, TP=["a", "x"], W="changed", V="new"),
        _line(TS=3, TP=["a", "x"], W="changed", V="older, later in the file"),
        _line(TS=4, TP=["a", "y"], W="changed", V="y"),
        _line(TS=4, TP=["a"], W="removed"),  # removes a.y (TS 4), not a.x (TS 5)
        _line(TS=9, TP=["b"], W="initialized", V="ignored"),
    ])
    assert effective(parse_tlog(data)[0]) == {("a", "x"): "new"}


def test_effective_value_at_an_equal_timestamp_is_the_later_line() -> None:
    """Topic.withNewerValue refuses only an older timestamp, so a tie goes to the later line."""
    data = _line(TS=7, TP=["a"], W="changed", V="first") + \
        _line(TS=7, TP=["a"], W="changed", V="second")
    assert effective(parse_tlog(data)[0]) == {("a",): "second"}
