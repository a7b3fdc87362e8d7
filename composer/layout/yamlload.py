"""YAML loading that keeps where every value came from and refuses what PyYAML lets slip.

PyYAML silently keeps the last of two duplicate keys and turns an unquoted 0755 into 493;
both are errors here. Every value comes back as a Node carrying its Loc.

Hostile YAML is refused before it costs anything: a first pass over libyaml's event stream (C,
no recursion, no alias expansion) bounds the nesting depth, the number of values and of
aliases; converting then counts every value it produces, so aliases that multiply
(the "billion laughs") or refer to themselves stop at the same bounds. Merge keys (`<<:`) are
refused: they copy keys invisibly, where a layout should say what it means.
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


MAX_DEPTH = 64  # a layout nests 5 deep; Python's recursion limit is 1000
MAX_VALUES = 20_000  # a layout with every option of 100 partitions has a few thousand
MAX_ALIASES = 1_000
MERGE_TAG = "tag:yaml.org,2002:merge"


def load_yaml(text: str, file: str) -> Node:
    _check_bounds(text, file)
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        loc = Loc(file, mark.line + 1, mark.column + 1) if mark else Loc(file)
        raise ComposerError(f"not valid YAML: {exc.problem or exc}", loc,
                            hint="check the indentation and quoting near this place") from None
    except yaml.YAMLError as exc:
        raise ComposerError(f"not valid YAML: {exc}", Loc(file)) from None
    except RecursionError:  # a nesting the bounds check could not see (it stopped at an error)
        raise ComposerError(f"the layout nests deeper than {MAX_DEPTH} levels, the limit",
                            Loc(file), hint="a layout nests a few levels deep") from None
    if root is None:
        raise ComposerError("the layout file is empty", Loc(file),
                            hint="start with 'version: 1' and 'name: …'")
    _expanded_size(root, file, {}, set())
    errors: list[ComposerError] = []
    node = _Converter(file, errors).convert(root, 0)
    if errors:
        raise_all(errors)
    return node


def _too_much(what: str, limit: int, loc: Loc) -> ComposerError:
    return ComposerError(f"the layout has more than {limit} {what}, the limit", loc,
                         hint="a layout is a short file; generate fewer values (or no YAML "
                         "alias chains)")


def _check_bounds(text: str, file: str) -> None:
    """Depth, value and alias counts from the event stream, before anything is built.

    libyaml is fast but has its own nesting limit in newer builds (PyYAML 6.0.4 refuses 1000
    levels as a scanner error, before any event comes out); the pure-Python parser is a state
    machine without recursion, so it walks what libyaml refused and finds our own, located bound.
    """
    parsers = [yaml.CSafeLoader, yaml.SafeLoader] if yaml.__with_libyaml__ else [yaml.SafeLoader]
    for parser in parsers:
        try:
            _walk_events(text, file, parser)
            return
        except yaml.YAMLError:
            continue  # the full parse below reports it, with PyYAML's own words


def _walk_events(text: str, file: str, parser: type) -> None:
    depth = values = aliases = 0
    for event in yaml.parse(text, Loader=parser):
        loc = Loc(file, event.start_mark.line + 1, event.start_mark.column + 1)
        if isinstance(event, yaml.CollectionStartEvent):
            depth += 1
            if depth > MAX_DEPTH:
                raise ComposerError(f"the layout nests deeper than {MAX_DEPTH} levels, the "
                                    "limit", loc, hint="a layout nests a few levels deep")
        elif isinstance(event, yaml.CollectionEndEvent):
            depth -= 1
        elif isinstance(event, yaml.AliasEvent):
            aliases += 1
            if aliases > MAX_ALIASES:
                raise _too_much("YAML aliases", MAX_ALIASES, loc)
        if isinstance(event, yaml.NodeEvent):
            values += 1
            if values > MAX_VALUES:
                raise _too_much("values", MAX_VALUES, loc)


def _expanded_size(node: yaml.Node, file: str, memo: dict[int, int], active: set[int]) -> int:
    """How many values `node` becomes once aliases are expanded, from each distinct node once
    (an alias is the same node object again), so an alias bomb costs its size in the file."""
    key = id(node)
    if key in memo:
        return memo[key]
    if key in active:
        raise ComposerError(f"the layout nests deeper than {MAX_DEPTH} levels, the limit",
                            _loc(file, node), hint="an alias refers to a value that contains it")
    active.add(key)
    total = 1
    if isinstance(node, yaml.MappingNode):
        total += sum(_expanded_size(k, file, memo, active) + _expanded_size(v, file, memo, active)
                     for k, v in node.value)
    elif isinstance(node, yaml.SequenceNode):
        total += sum(_expanded_size(item, file, memo, active) for item in node.value)
    active.discard(key)
    if total > MAX_VALUES:
        raise _too_much("values once its aliases are expanded", MAX_VALUES, _loc(file, node))
    memo[key] = total
    return total


class _Converter:
    """yaml.Node -> Node, counting values (aliases included) and depth as it goes."""

    def __init__(self, file: str, errors: list[ComposerError]) -> None:
        self.file = file
        self.errors = errors
        self.values = 0
        # PyYAML's constructor keeps every node it built (constructed_objects): one per load,
        # dropped with it, so loads leave nothing behind
        self.constructor = yaml.constructor.SafeConstructor()

    def convert(self, node: yaml.Node, depth: int) -> Node:
        loc = _loc(self.file, node)
        self.values += 1
        if self.values > MAX_VALUES:
            raise _too_much("values once its aliases are expanded", MAX_VALUES, loc)
        if depth > MAX_DEPTH:  # only aliases that contain themselves get here
            raise ComposerError(f"the layout nests deeper than {MAX_DEPTH} levels, the limit",
                                loc, hint="an alias refers to a value that contains it")
        return _convert(node, self, depth)


def _convert(node: yaml.Node, conv: _Converter, depth: int) -> Node:
    file, errors = conv.file, conv.errors
    loc = _loc(file, node)
    if isinstance(node, yaml.MappingNode):
        result: dict[str, Node] = {}
        key_locs: dict[str, Loc] = {}
        for key_node, value_node in node.value:
            if key_node.tag == MERGE_TAG:
                errors.append(ComposerError(
                    "YAML merge keys (<<) are not supported", _loc(file, key_node),
                    hint="write the keys out; a layout should show every value it sets"))
                continue
            try:
                key = _scalar(key_node, conv)
            except (yaml.YAMLError, ValueError, TypeError) as exc:
                key = exc  # reported below as a key that is not a string
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
            result[key] = conv.convert(value_node, depth + 1)
            key_locs[key] = _loc(file, key_node)
        return Node(result, loc, key_locs=key_locs)
    if isinstance(node, yaml.SequenceNode):
        return Node([conv.convert(item, depth + 1) for item in node.value], loc)
    assert isinstance(node, yaml.ScalarNode)
    try:
        value = _scalar(node, conv)
    except (yaml.YAMLError, ValueError, TypeError) as exc:
        # an explicit tag PyYAML's safe constructor refuses (`!foo x`, `!!int abc`)
        problem = exc.problem if isinstance(exc, yaml.MarkedYAMLError) else str(exc)
        errors.append(ComposerError(f"cannot read this value: {problem}", loc,
                                    hint="remove the ! tag"))
        value = None
    return Node(value, loc, tag=node.tag, quoted=node.style in ("'", '"', "|", ">"))


def _scalar(node: yaml.Node, conv: _Converter) -> Any:
    if not isinstance(node, yaml.ScalarNode):
        return node  # a complex key; reported by the caller
    return conv.constructor.construct_object(node, deep=True)
