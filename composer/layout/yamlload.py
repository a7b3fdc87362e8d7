"""YAML loading that keeps where every value came from and refuses what PyYAML lets slip.

PyYAML silently keeps the last of two duplicate keys and turns an unquoted 0755 into 493;
both are errors here. Every value comes back as a Node carrying its Loc.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import yaml

from composer.errors import ComposerError, Loc, raise_all


@dataclass(frozen=True, slots=True)
class Node:
    """A YAML value with its location. `value` is a dict[str, Node], a list[Node] or a scalar."""

    value: Any
    loc: Loc
    tag: str = ""  # the resolved YAML tag of a scalar (…:int, …:str, …)
    quoted: bool = False  # a scalar written in quotes
    key_locs: dict[str, Loc] | None = None  # a mapping's keys, where each was written

    @property
    def is_map(self) -> bool:
        return isinstance(self.value, dict)

    @property
    def is_list(self) -> bool:
        return isinstance(self.value, list)


def _loc(file: str, node: yaml.Node) -> Loc:
    return Loc(file, node.start_mark.line + 1, node.start_mark.column + 1)


def load_yaml(text: str, file: str) -> Node:
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        loc = Loc(file, mark.line + 1, mark.column + 1) if mark else Loc(file)
        raise ComposerError(f"not valid YAML: {exc.problem or exc}", loc,
                            hint="check the indentation and quoting near this place") from None
    except yaml.YAMLError as exc:
        raise ComposerError(f"not valid YAML: {exc}", Loc(file)) from None
    if root is None:
        raise ComposerError("the layout file is empty", Loc(file),
                            hint="start with 'version: 1' and 'name: …'")
    errors: list[ComposerError] = []
    node = _convert(root, file, errors)
    if errors:
        raise_all(errors)
    return node


def _convert(node: yaml.Node, file: str, errors: list[ComposerError]) -> Node:
    loc = _loc(file, node)
    if isinstance(node, yaml.MappingNode):
        result: dict[str, Node] = {}
        key_locs: dict[str, Loc] = {}
        for key_node, value_node in node.value:
            key = _scalar(key_node)
            if not isinstance(key, str):
                errors.append(ComposerError(f"a key must be a string, not {key!r}",
                                            _loc(file, key_node)))
                continue
            if key in result:
                first = key_locs[key]
                errors.append(ComposerError(
                    f"duplicate key {key!r} (first at line {first.line})", _loc(file, key_node),
                    hint="YAML keeps only the last one; remove one of them"))
                continue
            result[key] = _convert(value_node, file, errors)
            key_locs[key] = _loc(file, key_node)
        return Node(result, loc, key_locs=key_locs)
    if isinstance(node, yaml.SequenceNode):
        return Node([_convert(item, file, errors) for item in node.value], loc)
    assert isinstance(node, yaml.ScalarNode)
    return Node(_scalar(node), loc, tag=node.tag, quoted=node.style in ("'", '"', "|", ">"))


def _scalar(node: yaml.Node) -> Any:
    if not isinstance(node, yaml.ScalarNode):
        return node  # a complex key; reported by the caller
    return _CONSTRUCTOR.construct_object(node, deep=True)


_CONSTRUCTOR = yaml.SafeLoader("")
