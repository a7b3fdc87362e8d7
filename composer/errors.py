"""Errors are values: a message, where it happened, and a hint. Only cli.py prints them."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


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
        text = head + self.message
        if self.hint:
            text += f"\n  hint: {self.hint}"
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


def raise_all(errors: list[ComposerError]) -> None:
    """Raise the collected errors, one or many; do nothing if there are none."""
    if len(errors) == 1:
        raise errors[0]
    if errors:
        raise ComposerErrors(errors)
