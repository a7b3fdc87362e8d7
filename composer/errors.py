"""Errors are values: a message, where it happened, and a hint. Only cli.py prints them."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

# How a name (bytes on Linux, carried as UTF-8 with surrogateescape: see composer/sources) is
# shown in messages, report.txt and manifest.json: valid UTF-8 as itself; every byte that is not
# part of valid UTF-8, and every control character, as \xNN; a backslash as \\. The result is
# printable, valid UTF-8, and names two different byte strings differently.
_SHOWN = {0x5C: "\\\\"}
_SHOWN.update({c: f"\\x{c:02x}" for c in (*range(0x20), 0x7F)})
_SHOWN.update({0xDC00 + b: f"\\x{b:02x}" for b in range(0x80, 0x100)})
# a lone surrogate that no byte stands for (from text that was never a name): its code point
_SHOWN.update({c: f"\\u{c:04x}" for c in range(0xD800, 0xE000) if c not in _SHOWN})


_NEEDS_ESCAPE = re.compile("[\x00-\x1f\x7f\\\\\ud800-\udfff]")


def shown(name: str) -> str:
    """A name as people and JSON see it (the escaping above)."""
    # the search runs in C: most names need nothing, and a manifest shows every name
    return name.translate(_SHOWN) if _NEEDS_ESCAPE.search(name) else name


def printable(text: str) -> str:
    """A message with any undecodable byte of a name in it escaped as shown() does; never fails
    to encode (a message may quote names that the code that made it did not escape)."""
    if text.isascii():
        return text
    return "".join(_SHOWN.get(ord(c), c) if 0xD800 <= ord(c) < 0xE000 else c for c in text)


@dataclass(frozen=True, slots=True, order=True)
class Loc:
    """A place in an input file; line and column are 1-based."""

    file: str
    line: int = 0
    col: int = 0

    def __str__(self) -> str:
        if self.line:
            return f"{self.file}:{self.line}:{self.col}"
        return self.file


class ComposerError(Exception):
    """A user-facing error: bad layout, bad input, or a build that cannot be done."""

    def __init__(self, message: str, loc: Loc | None = None, hint: str | None = None,
                 path: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.loc = loc
        self.hint = hint
        self.path = path  # dotted layout path such as partitions[1].size

    def render(self) -> str:
        head = "error: "
        if self.loc is not None:
            head += f"{self.loc}: "
        if self.path:
            head += f"{self.path}: "
        text = head + printable(self.message)
        if self.hint:
            text += f"\n  hint: {printable(self.hint)}"
        return text

    def sort_key(self) -> tuple[str, int, int, str]:
        loc = self.loc or Loc("")
        return (loc.file, loc.line, loc.col, self.message)

    def __str__(self) -> str:
        return self.render()


class ComposerErrors(ComposerError):
    """Several errors reported at once (a layout is checked whole before anything is written)."""

    def __init__(self, errors: Iterable[ComposerError]) -> None:
        self.errors = sorted(errors, key=ComposerError.sort_key)
        super().__init__("\n".join(e.render() for e in self.errors))

    def render(self) -> str:
        return "\n".join(e.render() for e in self.errors)

    def __reduce__(self) -> tuple[type[ComposerErrors], tuple[list[ComposerError]]]:
        return ComposerErrors, (self.errors,)  # a child process hands them to the parent


def raise_all(errors: list[ComposerError]) -> None:
    """Raise the collected errors, one or many; do nothing if there are none."""
    if len(errors) == 1:
        raise errors[0]
    if errors:
        raise ComposerErrors(errors)
