"""Setting values in effectiveConfig.yaml (and config.yaml) without re-serializing it.

The counterpart of composer.rules.yamlcut, which removes keys: here a key's scalar value is
replaced in place, or a missing key is inserted as new lines after the last child of the deepest
block mapping that exists, indented like its siblings. Nothing else in the text moves. Every
edit is proven the way yamlcut proves its cuts: the result is parsed again and must equal the
original tree with exactly these values set, or the edit is refused. Keys match case-insensitively
(the nucleus's configuration keys are) and keep the spelling the file has.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

import yaml

from composer.rules.yamlcut import YamlCutError

Path = tuple[str, ...]
_PLAIN_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]*$")


def set_values(data: bytes, values: Mapping[Path, Any]) -> bytes:
    """`data` with every path in `values` set to its (scalar) value."""
    text = data.decode("utf-8")
    expected = yaml.safe_load(text)
    if expected is None:
        expected = {}
    for path, value in values.items():
        text, spelled = _set_one(text, path, value)
        _assign(expected, spelled, value)
    if yaml.safe_load(text) != expected:
        raise YamlCutError("setting the values would change other keys")
    return text.encode("utf-8")


def _set_one(text: str, path: Path, value: Any) -> tuple[str, Path]:
    root = yaml.compose(text, Loader=yaml.SafeLoader)
    if root is None:
        raise YamlCutError("the document is empty")
    node: yaml.Node = root
    spelled: list[str] = []
    for depth, name in enumerate(path):
        if not isinstance(node, yaml.MappingNode):
            raise YamlCutError(f"{'.'.join(spelled) or 'the document'} is not a mapping")
        child = next(((k, v) for k, v in node.value if str(k.value).lower() == name.lower()),
                     None)
        if child is None:
            return _insert(text, node, path[depth:], value), (*spelled, *path[depth:])
        spelled.append(str(child[0].value))
        node = child[1]
    if not isinstance(node, yaml.ScalarNode):
        raise YamlCutError(f"{'.'.join(spelled)} holds a collection, not a value")
    start, end = node.start_mark.index, node.end_mark.index
    if node.style in ("|", ">"):
        raise YamlCutError(f"{'.'.join(spelled)} is a block scalar")
    return text[:start] + _scalar(value) + text[end:], tuple(spelled)


def _insert(text: str, mapping: yaml.MappingNode, rest: Path, value: Any) -> str:
    if mapping.flow_style or not mapping.value:
        raise YamlCutError("a new key would go into a flow-style or empty mapping")
    indent = mapping.value[0][0].start_mark.column
    end = max(_last_index(v) for _, v in mapping.value)
    if end > 0 and text[end - 1] == "\n":
        at = end  # a block scalar's end mark is already on the next line
    else:
        newline = text.find("\n", end)
        at = len(text) if newline < 0 else newline + 1
    lines = []
    for depth, name in enumerate(rest):
        pad = " " * (indent + 2 * depth)
        last = depth == len(rest) - 1
        lines.append(f"{pad}{_key(name)}:{' ' + _scalar(value) if last else ''}\n")
    prefix = "" if at == 0 or text[at - 1] == "\n" else "\n"
    return text[:at] + prefix + "".join(lines) + text[at:]


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


def _assign(tree: Any, path: Path, value: Any) -> None:
    for name in path[:-1]:
        tree = tree.setdefault(name, {})
    tree[path[-1]] = value
