"""Removing keys from a YAML document without touching anything else.

The nucleus writes effectiveConfig.yaml with Jackson's YAMLMapper (SnakeYAML's emitter underneath:
`Kernel.writeEffectiveConfig` in aws-greengrass-nucleus), and the AWS golden-image procedure feeds
that file back with `--init-config`, so an edit that changes its structure ships a broken device.
We therefore cut the text of a removed key out by the span of the node itself, never re-emit the
document, and prove every edit: the result is parsed again and must equal the original tree minus
exactly the removed keys, or the edit is refused.

Spans come from PyYAML's composer marks, with two corrections. A block collection's end mark is
where the *next* token starts (possibly on the next key's line), so its end is taken from its last
child instead. A block scalar's (`|`, `>`) end mark is on the line after its text. Lines that hold
only blanks or comments after a removed value go with it, so that a preceding `|+` scalar does not
gain the removed key's trailing blank lines.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import yaml

Path = tuple[str, ...]
Span = tuple[int, int, str]  # [start, end) in characters, replaced by the text

_BREAK = re.compile(r"\r\n|[\n\r\x85\u2028\u2029]")


class YamlCutError(Exception):
    """The document cannot be edited safely (aliases, or a cut that would change other keys)."""


@dataclass(frozen=True, slots=True)
class YamlKey:
    path: Path  # as written
    line: int  # 0-based line of the key


def keys(data: bytes) -> Iterator[YamlKey]:
    """Every mapping key of a YAML document (unparseable documents have none)."""
    try:
        root = yaml.compose(data.decode("utf-8"), Loader=yaml.SafeLoader)
    except (yaml.YAMLError, UnicodeDecodeError):
        return
    yield from _keys(root, ())


def _keys(node: yaml.Node | None, path: Path) -> Iterator[YamlKey]:
    if isinstance(node, yaml.MappingNode):
        for key_node, value in node.value:
            key = (*path, str(key_node.value))
            yield YamlKey(key, key_node.start_mark.line)
            yield from _keys(value, key)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            yield from _keys(item, (*path, str(index)))


def cut(data: bytes, doomed: Callable[[Path], bool]) -> tuple[bytes, list[Path]]:
    """The document without the mapping keys `doomed` picks (given the lower-cased path), and the
    paths removed (as written). Raises YamlCutError when the edit cannot be made safely."""
    text = data.decode("utf-8")
    if _has_alias(text):
        raise YamlCutError("it uses anchors and aliases (the nucleus never writes them)")
    root = yaml.compose(text, Loader=yaml.SafeLoader)
    spans: list[Span] = []
    removed: list[Path] = []
    _plan(text, root, (), doomed, spans, removed)
    if not spans:
        return data, []
    result = _apply(text, spans)
    _prove(text, result, removed)
    return result.encode("utf-8"), removed


def _has_alias(text: str) -> bool:
    try:
        return any(isinstance(e, yaml.AliasEvent) for e in yaml.parse(text, Loader=yaml.SafeLoader))
    except yaml.YAMLError:
        return False


def _plan(text: str, node: yaml.Node | None, path: Path, doomed: Callable[[Path], bool],
          spans: list[Span], removed: list[Path]) -> None:
    if isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _plan(text, item, (*path, str(index)), doomed, spans, removed)
        return
    if not isinstance(node, yaml.MappingNode):
        return
    items = node.value
    gone = [doomed(tuple(p.lower() for p in (*path, str(k.value)))) for k, _ in items]
    for (key_node, value), is_gone in zip(items, gone, strict=True):
        key = (*path, str(key_node.value))
        if is_gone:
            removed.append(key)
        else:
            _plan(text, value, key, doomed, spans, removed)
    if not any(gone):
        return
    if all(gone):
        # an emptied mapping stays a mapping ({}), not null: the nucleus merges a null over a
        # whole subtree (Topics.updateChild), and the tree must equal the original minus the keys
        spans.append((items[0][0].start_mark.index, _end(text, items[-1][1]),
                      "" if node.flow_style else "{}"))
        return
    for first, last in _runs(gone):
        spans.append(_flow_span(text, items, first, last) if node.flow_style
                     else _block_span(text, items, first, last))


def _runs(flags: list[bool]) -> Iterator[tuple[int, int]]:
    """(first, last) index of every run of True values."""
    start: int | None = None
    for index, flag in enumerate([*flags, False]):
        if flag and start is None:
            start = index
        elif not flag and start is not None:
            yield start, index - 1
            start = None


def _flow_span(text: str, items: list[Any], first: int, last: int) -> Span:
    if last + 1 < len(items):  # "a: 1, " up to the next kept key
        return (items[first][0].start_mark.index, items[last + 1][0].start_mark.index, "")
    # the last items: from the end of the previous kept value (", c: 3")
    return (_end(text, items[first - 1][1]), _end(text, items[last][1]), "")


def _block_span(text: str, items: list[Any], first: int, last: int) -> Span:
    key = items[first][0].start_mark
    line_start = key.index - key.column
    if text[line_start:key.index].strip() == "":
        # whole lines: the key's line up to the next line with content after the value
        return (line_start, _next_content_line(text, _end(text, items[last][1])), "")
    # the first key shares its line with "- " (a mapping in a sequence): cut up to the next key,
    # which starts a line at the same column
    if last + 1 >= len(items):
        raise YamlCutError(f"a key shares line {key.line + 1} with other text")
    return (key.index, items[last + 1][0].start_mark.index, "")


def _end(text: str, node: yaml.Node) -> int:
    """Where the node's own text ends (an index into `text`)."""
    if isinstance(node, yaml.MappingNode | yaml.SequenceNode) and not node.flow_style:
        last = node.value[-1]
        return _end(text, last[1] if isinstance(node, yaml.MappingNode) else last)
    mark = node.end_mark
    if isinstance(node, yaml.ScalarNode) and node.style in ("|", ">"):
        line_start = mark.index - mark.column
        if line_start > 0 and text[line_start:mark.index].strip() == "":
            # the marks sit on the line after the scalar's text: end before that line's break
            return line_start - (2 if text[line_start - 2:line_start] == "\r\n" else 1)
    return int(mark.index)


def _next_content_line(text: str, index: int) -> int:
    """The start of the first line from `index` on (the line holding `index` itself only when
    `index` starts it) that has more than blanks and a comment, or the end of the text."""
    position = index if _starts_line(text, index) else _line_end(text, index)
    while position < len(text):
        end = _line_end(text, position)
        stripped = text[position:end].strip()
        if stripped and not stripped.startswith("#"):
            return position
        position = end
    return len(text)


def _starts_line(text: str, index: int) -> bool:
    if index == 0:
        return True
    if text[index - 1] == "\r" and text[index:index + 1] == "\n":
        return False  # between the two characters of a CRLF
    return _BREAK.fullmatch(text[index - 1]) is not None


def _line_end(text: str, index: int) -> int:
    """The index just after the line break that ends the line holding `index`."""
    found = _BREAK.search(text, index)
    return found.end() if found else len(text)


def _apply(text: str, spans: list[Span]) -> str:
    out: list[str] = []
    position = 0
    for start, end, replacement in sorted(spans):
        if start < position:  # inside a span already cut (a run's span holds its children)
            start = position
        out.append(text[position:start])
        out.append(replacement)
        position = max(position, end)
    out.append(text[position:])
    return "".join(out)


def prune(tree: Any, paths: list[Path]) -> Any:
    """`tree` (a parsed document) without the mapping keys at `paths` (keys compared as
    written, list indexes as decimal strings)."""
    doomed = set(paths)

    def walk(value: Any, path: Path) -> Any:
        if isinstance(value, dict):
            return {k: walk(v, (*path, str(k))) for k, v in value.items()
                    if (*path, str(k)) not in doomed}
        if isinstance(value, list):
            return [walk(v, (*path, str(i))) for i, v in enumerate(value)]
        return value

    return walk(tree, ())


def _prove(before: str, after: str, removed: list[Path]) -> None:
    try:
        parsed = yaml.safe_load(after)
    except yaml.YAMLError as exc:
        raise YamlCutError(f"the edited text does not parse ({exc.__class__.__name__})") from exc
    if parsed != prune(yaml.safe_load(before), removed):
        raise YamlCutError("cutting the keys out would change other keys")
