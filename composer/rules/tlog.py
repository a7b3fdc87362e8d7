"""Greengrass configuration files: the transaction log (config.tlog) and effectiveConfig.yaml.

A tlog is JSON lines {"TS", "TP", "W", "V"} (greengrass-facts.md §6). We edit it only by dropping
whole lines, so every line kept stays byte-identical. effectiveConfig.yaml is edited the same way:
the lines of a removed key are cut out, the rest is untouched. Config keys are case-insensitive.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import yaml

TLOG_KEYS = ("TS", "TP", "W", "V")
ACTIONS = ("changed", "initialized", "childChanged", "removed", "childRemoved",
           "timestampUpdated", "interiorAdded")

Key = tuple[str, ...]  # a config path, lower-cased


@dataclass(frozen=True, slots=True)
class TlogLine:
    number: int  # 1-based
    raw: bytes  # the line, with its newline
    ts: int
    path: tuple[str, ...]  # as written
    action: str
    value: Any

    @property
    def key(self) -> Key:
        return tuple(p.lower() for p in self.path)


def parse_tlog(data: bytes) -> tuple[list[TlogLine], list[tuple[int, str]]]:
    """The lines of a tlog, and (line number, problem) for every line that is not strict."""
    lines: list[TlogLine] = []
    problems: list[tuple[int, str]] = []
    for number, raw in enumerate(data.splitlines(keepends=True), start=1):
        parsed = _parse_line(raw)
        if isinstance(parsed, str):
            problems.append((number, parsed))
        else:
            ts, path, action, value = parsed
            lines.append(TlogLine(number, raw, ts, path, action, value))
    return lines, problems


def _parse_line(raw: bytes) -> tuple[int, tuple[str, ...], str, Any] | str:
    try:
        obj = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        return f"not JSON ({exc.__class__.__name__})" if raw.strip() else "blank line"
    if not isinstance(obj, dict) or tuple(obj) != TLOG_KEYS:
        keys = list(obj) if isinstance(obj, dict) else type(obj).__name__
        return f"keys must be exactly TS, TP, W, V in that order, got {keys}"
    ts, path, action = obj["TS"], obj["TP"], obj["W"]
    if isinstance(ts, bool) or not isinstance(ts, int):
        return "TS is not an integer"
    if not isinstance(path, list) or not all(isinstance(p, str) for p in path):
        return "TP is not a list of strings"
    if action not in ACTIONS:
        return f"W {action!r} is not a known action"
    return ts, tuple(path), action, obj["V"]


def effective(lines: list[TlogLine]) -> dict[Key, Any]:
    """The leaf values the nucleus would end up with (newest timestamp wins)."""
    values: dict[Key, tuple[int, Any]] = {}
    for line in lines:
        if line.action == "changed":
            old = values.get(line.key)
            if old is None or line.ts >= old[0]:
                values[line.key] = (line.ts, line.value)
        elif line.action == "removed":
            for key in [k for k in values if k[: len(line.key)] == line.key]:
                if values[key][0] <= line.ts:
                    del values[key]
    return {k: v for k, (_, v) in values.items()}


def under(key: Key, prefix: Key) -> bool:
    return key[: len(prefix)] == prefix


def drop_lines(data: bytes, doomed: Callable[[TlogLine], bool]) -> tuple[bytes, list[TlogLine]]:
    """The tlog without the lines `doomed` picks (unparseable lines are kept as they are)."""
    lines, _ = parse_tlog(data)
    gone = {line.number for line in lines if doomed(line)}
    kept = [raw for n, raw in enumerate(data.splitlines(keepends=True), 1) if n not in gone]
    return b"".join(kept), [line for line in lines if line.number in gone]


# --- effectiveConfig.yaml ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class YamlKey:
    path: tuple[str, ...]  # as written
    first_line: int  # 0-based, inclusive
    end_line: int  # 0-based, exclusive


def yaml_keys(data: bytes) -> Iterator[YamlKey]:
    """Every mapping key of a YAML document with the lines its key and value span."""
    try:
        root = yaml.compose(data.decode("utf-8"), Loader=yaml.SafeLoader)
    except (yaml.YAMLError, UnicodeDecodeError):
        return
    yield from _walk(root, ())


def _walk(node: yaml.Node | None, path: tuple[str, ...]) -> Iterator[YamlKey]:
    if not isinstance(node, yaml.MappingNode):
        return
    for key_node, value_node in node.value:
        key = (*path, str(key_node.value))
        end = value_node.end_mark
        end_line = end.line + 1 if end.column > 0 else end.line
        yield YamlKey(key, key_node.start_mark.line, max(end_line, key_node.start_mark.line + 1))
        yield from _walk(value_node, key)


def yaml_problem(data: bytes) -> str | None:
    """Why `data` is not a YAML document we can edit, or None when it is."""
    try:
        yaml.compose(data.decode("utf-8"), Loader=yaml.SafeLoader)
    except UnicodeDecodeError:
        return "not UTF-8"
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f" at line {mark.line + 1}" if mark is not None else ""
        return f"{exc.problem or exc.__class__.__name__}{where}"
    except yaml.YAMLError as exc:
        return str(exc).splitlines()[0] if str(exc) else exc.__class__.__name__
    return None


def yaml_values(data: bytes) -> Iterator[tuple[tuple[str, ...], Any]]:
    """(path, scalar value) for every leaf of a YAML document."""
    try:
        doc = yaml.safe_load(data.decode("utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError):
        return
    yield from _leaves(doc, ())


def _leaves(doc: Any, path: tuple[str, ...]) -> Iterator[tuple[tuple[str, ...], Any]]:
    if isinstance(doc, dict):
        for k, v in doc.items():
            yield from _leaves(v, (*path, str(k)))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            yield from _leaves(v, (*path, str(i)))
    else:
        yield path, doc


def drop_yaml_keys(data: bytes, doomed: Callable[[Key], bool]) -> tuple[bytes, list[str]]:
    """The document without the keys `doomed` picks (by their lower-cased path)."""
    lines = data.splitlines(keepends=True)
    cut: set[int] = set()
    removed: list[str] = []
    for item in yaml_keys(data):
        if doomed(tuple(p.lower() for p in item.path)) and item.first_line not in cut:
            cut.update(range(item.first_line, item.end_line))
            removed.append(".".join(item.path))
    return b"".join(line for i, line in enumerate(lines) if i not in cut), removed
