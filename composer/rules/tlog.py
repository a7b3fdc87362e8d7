"""Greengrass configuration files: the transaction log (config.tlog) and effectiveConfig.yaml.

A tlog is JSON lines {"TS", "TP", "W", "V"} (docs/greengrass.md §6). We edit it only by dropping
whole lines, so every line kept stays byte-identical. effectiveConfig.yaml is edited the same way:
its keys are cut out by composer.rules.yamlcut. Config keys are case-insensitive.
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
    """One line as the nucleus reads it: a plain Jackson ObjectMapper into
    `Tlogline {long TS; String[] TP; WhatHappened W; Object V}` (aws-greengrass-nucleus
    config/Tlogline.java, ConfigurationReader). Jackson matches keys by name, so their order
    does not matter and a missing key keeps its default (TS 0, TP/W/V null: the nucleus's own
    test.tlog has a `removed` line without V); an unknown key or W value fails the whole file."""
    try:
        obj = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        return f"not JSON ({exc.__class__.__name__})" if raw.strip() else "blank line"
    if not isinstance(obj, dict):
        return f"not a JSON object but {type(obj).__name__}"
    extra = [k for k in obj if k not in TLOG_KEYS]
    if extra:
        return f"unknown key {extra[0]!r} (the nucleus reads only TS, TP, W and V)"
    ts, path, action = obj.get("TS", 0), obj.get("TP"), obj.get("W")
    if isinstance(ts, bool) or not isinstance(ts, int):
        return "TS is not an integer"
    if path is not None and (not isinstance(path, list)
                             or not all(isinstance(p, str) for p in path)):
        return "TP is not a list of strings"
    if action is not None and action not in ACTIONS:
        return f"W {action!r} is not one of {', '.join(ACTIONS)}"
    return ts, tuple(path or ()), action or "", obj.get("V")


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
