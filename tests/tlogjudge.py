"""A replayer of Greengrass config.tlog files that follows the nucleus, written from its sources
(docs/greengrass.md §6, and the nucleus classes named below), not from composer's code: the
judge of what a device will believe.

* `KernelLifecycle.initConfigAndTlog`: the first *valid* file of config.tlog, config.tlog~,
  bootstrap.tlog, bootstrap.tlog~ is replayed; a file is invalid when empty or when any line
  fails Jackson's strict read into `Tlogline {long TS; String[] TP; WhatHappened W; Object V}`
  (an unknown key or W value, a non-object, a blank line).
* `ConfigurationReader.mergeTLogInto`: `changed` -> `lookup(TP).withNewerValue(TS, V)`, which
  refuses only an older TS (an equal TS applies: the later line wins); `removed` ->
  `find(TP).remove(TS)` with the same rule; `timestampUpdated` moves a topic's time forward;
  `interiorAdded` makes the container; the others change nothing.
* Keys are case-insensitive (the nucleus's CaseInsensitiveString); the first spelling stays.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

FALLBACK_ORDER = ("config.tlog", "config.tlog~", "bootstrap.tlog", "bootstrap.tlog~")
WHAT_HAPPENED = {"changed", "initialized", "childChanged", "removed", "childRemoved",
                 "timestampUpdated", "interiorAdded"}


@dataclass
class _Topic:
    value: Any = None
    ts: int = 0


@dataclass
class _Topics:
    children: dict[str, tuple[str, _Topic | _Topics]] = field(default_factory=dict)

    def newest(self) -> int:
        return max((c.ts if isinstance(c, _Topic) else c.newest()
                    for _, c in self.children.values()), default=0)


def valid(data: bytes) -> bool:
    if not data:
        return False
    for raw in data.split(b"\n")[:-1] if data.endswith(b"\n") else data.split(b"\n"):
        try:
            obj = json.loads(raw)
        except ValueError:
            return False
        if not isinstance(obj, dict) or set(obj) - {"TS", "TP", "W", "V"}:
            return False
        if "W" in obj and obj["W"] not in WHAT_HAPPENED:
            return False
        if not isinstance(obj.get("TS", 0), int) or isinstance(obj.get("TS"), bool):
            return False
        tp = obj.get("TP")
        if tp is not None and not (isinstance(tp, list) and all(isinstance(p, str) for p in tp)):
            return False
    return True


def _lookup(root: _Topics, path: list[str], leaf: bool) -> _Topic | _Topics | None:
    node: _Topics = root
    for i, name in enumerate(path):
        last = i == len(path) - 1
        found = node.children.get(name.lower())
        if found is None:
            child: _Topic | _Topics = _Topic() if (last and leaf) else _Topics()
            node.children[name.lower()] = (name, child)
            found = (name, child)
        if last:
            return found[1]
        if not isinstance(found[1], _Topics):
            return None  # a value where a container should be: the nucleus refuses the line
        node = found[1]
    return node


def _find(root: _Topics, path: list[str]) -> tuple[_Topics, str] | None:
    node = root
    for name in path[:-1]:
        found = node.children.get(name.lower())
        if found is None or not isinstance(found[1], _Topics):
            return None
        node = found[1]
    return (node, path[-1].lower()) if path and path[-1].lower() in node.children else None


def replay(data: bytes) -> dict[str, Any]:
    """The configuration one tlog gives, as nested dicts with the first spelling of each key."""
    root = _Topics()
    for raw in data.splitlines():
        obj = json.loads(raw)
        ts, path, what, value = obj.get("TS", 0), obj.get("TP") or [], obj.get("W"), obj.get("V")
        if what == "changed":
            topic = _lookup(root, path, leaf=True)
            if isinstance(topic, _Topic) and ts >= topic.ts:
                topic.value, topic.ts = value, ts
        elif what == "timestampUpdated":
            topic = _lookup(root, path, leaf=True)
            if isinstance(topic, _Topic) and ts > topic.ts:
                topic.ts = ts
        elif what == "interiorAdded":
            _lookup(root, path, leaf=False)
        elif what == "removed" and (found := _find(root, path)) is not None:
            parent, key = found
            node = parent.children[key][1]
            newest = node.ts if isinstance(node, _Topic) else node.newest()
            if ts >= newest:
                del parent.children[key]
    return _plain(root)


def _plain(node: _Topics) -> dict[str, Any]:
    return {name: (child.value if isinstance(child, _Topic) else _plain(child))
            for name, child in node.children.values()}


def boot_config(files: dict[str, bytes]) -> tuple[str, dict[str, Any]]:
    """(the file the nucleus would load, its configuration) from the config folder's tlogs."""
    for name in FALLBACK_ORDER:
        if name in files and valid(files[name]):
            return name, replay(files[name])
    raise AssertionError("no valid tlog: the nucleus would start unconfigured")


def get(config: dict[str, Any], *path: str) -> Any:
    node: Any = config
    for name in path:
        match = [k for k in node if k.lower() == name.lower()] if isinstance(node, dict) else []
        if not match:
            return None
        node = node[match[0]]
    return node
