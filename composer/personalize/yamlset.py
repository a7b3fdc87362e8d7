"""Setting values in effectiveConfig.yaml (and config.yaml) without re-serializing it.

The counterpart of composer.rules.yamlcut, which removes keys: here a key's scalar value is
replaced in place, or a missing key is inserted as new lines after the last child of the deepest
block mapping that exists, indented like its siblings. Nothing else in the text moves. Every
edit is proven the way yamlcut proves its cuts: the result is parsed again and must equal the
original tree with exactly these values set, or the edit is refused. Keys match case-insensitively
(the nucleus's configuration keys are) and keep the spelling the file has.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Mapping
from typing import Any

import yaml

from composer.rules.yamlcut import YamlCutError

Path = tuple[str, ...]
_PLAIN_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]*$")
# libyaml when PyYAML has it, for the two whole-document loads (the values, not the marks)
_FAST = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _load(text: str) -> Any:
    return yaml.load(text, Loader=_FAST)  # noqa: S506 - a safe loader


@functools.lru_cache(maxsize=16)
def _parsed(text: str) -> tuple[yaml.Node | None, Any]:
    """The node tree of `text`, with its marks, and its value. Every device of a production
    line edits the same golden files, and the pure-Python composer takes milliseconds a file:
    each text is parsed once (both are only read, never changed: see `_assigned`)."""
    return yaml.compose(text, Loader=yaml.SafeLoader), _load(text)


def set_values(data: bytes, values: Mapping[Path, Any]) -> bytes:
    """`data` with every path in `values` set to its (scalar) value: one parse, every edit
    made on the original text, one proof."""
    text = data.decode("utf-8")
    root, expected = _parsed(text)
    if root is None:
        raise YamlCutError("the document is empty")
    edits: list[tuple[int, int, int, str]] = []  # start, -indent (deeper first), end, text
    inserts: dict[int, tuple[yaml.MappingNode, dict[str, Any], int]] = {}
    for path, value in values.items():
        spelled = _plan_one(text, root, path, value, edits, inserts)
        expected = _assigned(expected, spelled, value)
    for mapping, new, key_column in inserts.values():
        if not mapping.value:  # `{}`, which yamlcut leaves where it emptied a mapping
            edits.append(_fill_empty(text, mapping, new, key_column))
            continue
        at, indent = _insert_point(text, mapping)
        lead = "\n" if at == len(text) and not text.endswith("\n") else ""
        edits.append((at, -indent, at, lead + "".join(_lines(new, indent))))
    out, cursor = [], 0
    for start, _, end, replacement in sorted(edits):
        out += [text[cursor:start], replacement]
        cursor = end
    result = "".join(out) + text[cursor:]
    if _load(result) != expected:
        raise YamlCutError("setting the values would change other keys")
    return result.encode("utf-8")


def _plan_one(text: str, root: yaml.Node, path: Path, value: Any,
              edits: list[tuple[int, int, int, str]],
              inserts: dict[int, tuple[yaml.MappingNode, dict[str, Any], int]]) -> Path:
    node: yaml.Node = root
    spelled: list[str] = []
    key_column = -2  # the column of the key whose value `node` is (the root: none)
    for depth, name in enumerate(path):
        if not isinstance(node, yaml.MappingNode):
            raise YamlCutError(f"{'.'.join(spelled) or 'the document'} is not a mapping")
        child = next(((k, v) for k, v in node.value if str(k.value).lower() == name.lower()),
                     None)
        if child is None:
            if node.flow_style and node.value:
                raise YamlCutError("a new key would go into a flow-style mapping")
            tree = inserts.setdefault(id(node), (node, {}, key_column))[1]
            for part in path[depth:-1]:
                tree = tree.setdefault(part, {})
            tree[path[-1]] = _scalar(value)
            return (*spelled, *path[depth:])
        spelled.append(str(child[0].value))
        key_column = child[0].start_mark.column
        node = child[1]
    if not isinstance(node, yaml.ScalarNode) or node.style in ("|", ">"):
        raise YamlCutError(f"{'.'.join(spelled)} does not hold a one-line value")
    edits.append((node.start_mark.index, 0, node.end_mark.index, _scalar(value)))
    return tuple(spelled)


def _fill_empty(text: str, mapping: yaml.MappingNode, new: dict[str, Any],
                key_column: int) -> tuple[int, int, int, str]:
    """Replace an empty `{}` by the new keys in block style: on its own line the keys take its
    place and column; after `key: {}` they go on the next lines, indented below the key."""
    start, end = mapping.start_mark.index, mapping.end_mark.index
    line_start = text.rfind("\n", 0, start) + 1
    if text[line_start:start].strip() == "":
        lines = _lines(new, start - line_start)
        return (start, 0, end, "".join(lines)[start - line_start:].rstrip("\n"))
    indent = key_column + 2
    if key_column < 0 or text[start - 1:start] != " ":
        raise YamlCutError("a new key would go into an empty mapping the edit cannot reach")
    return (start - 1, 0, end, "\n" + "".join(_lines(new, indent)).rstrip("\n"))


def _insert_point(text: str, mapping: yaml.MappingNode) -> tuple[int, int]:
    """Where new lines go (after the mapping's last child) and their indentation."""
    indent = mapping.value[0][0].start_mark.column
    end = max(_last_index(v) for _, v in mapping.value)
    if end > 0 and text[end - 1] == "\n":
        return end, indent  # a block scalar's end mark is already on the next line
    newline = text.find("\n", end)
    return (len(text) if newline < 0 else newline + 1), indent


def _lines(tree: dict[str, Any], indent: int) -> list[str]:
    lines = []
    for name, value in tree.items():
        pad = " " * indent
        if isinstance(value, dict):
            lines.append(f"{pad}{_key(name)}:\n")
            lines += _lines(value, indent + 2)
        else:
            lines.append(f"{pad}{_key(name)}: {value}\n")
    return lines


def _last_index(node: yaml.Node) -> int:
    if isinstance(node, yaml.MappingNode):
        return max((_last_index(v) for _, v in node.value), default=node.end_mark.index)
    if isinstance(node, yaml.SequenceNode):
        return max((_last_index(v) for v in node.value), default=node.end_mark.index)
    return int(node.end_mark.index)


def _scalar(value: Any) -> str:
    """A JSON scalar is YAML flow text with the same value (strings double-quoted, as the
    nucleus's writer quotes them)."""
    if not isinstance(value, str | int | float | bool) and value is not None:
        raise YamlCutError(f"only scalar values can be set, not {type(value).__name__}")
    return json.dumps(value, ensure_ascii=False)


def _key(name: str) -> str:
    return name if _PLAIN_KEY.match(name) else json.dumps(name, ensure_ascii=False)


def _assigned(tree: dict[str, Any], path: Path, value: Any) -> dict[str, Any]:
    """A copy of `tree` with `path` set to `value`: only the mappings along the path are
    copied (`tree` is the cached value of the golden text, shared by every device)."""
    top = dict(tree)
    node = top
    for name in path[:-1]:
        child = node.get(name)
        child = dict(child) if isinstance(child, dict) else {}
        node[name] = child
        node = child
    node[path[-1]] = value
    return top
