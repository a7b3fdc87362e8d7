"""What the rules changed, dropped and warned about: printed on stderr and kept in report.txt."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from composer.errors import printable


class Level(StrEnum):
    CHANGED = "changed"
    DROPPED = "dropped"
    WARNING = "warning"
    KEPT = "kept"  # a file kept by a rule that could have dropped it, and why
    NOTE = "note"  # what the image will do, e.g. that the device will provision itself


@dataclass(frozen=True, slots=True, order=True)
class Finding:
    level: Level
    message: str


@dataclass(slots=True)
class Report:
    findings: list[Finding] = field(default_factory=list)
    # text that must never appear in an output (the report is one), with what stands instead
    masks: dict[str, str] = field(default_factory=dict)

    def mask(self, text: str, alias: str) -> None:
        """Write `alias` wherever a finding, made before or after, would show `text`."""
        if text:
            self.masks[text] = alias

    def _masked(self, message: str) -> str:
        for text, alias in self.masks.items():
            message = message.replace(text, alias)
        # a name's undecodable bytes as \xNN (errors.shown), so report.txt is always UTF-8
        return printable(message)

    def changed(self, message: str) -> None:
        self.findings.append(Finding(Level.CHANGED, message))

    def dropped(self, message: str) -> None:
        self.findings.append(Finding(Level.DROPPED, message))

    def kept(self, message: str) -> None:
        self.findings.append(Finding(Level.KEPT, message))

    def note(self, message: str) -> None:
        self.findings.append(Finding(Level.NOTE, message))

    def warn(self, message: str) -> None:
        self.findings.append(Finding(Level.WARNING, message))

    def lines(self) -> list[str]:
        return [f"{f.level}: {self._masked(f.message)}" for f in self.findings]

    @property
    def warnings(self) -> list[str]:
        return [self._masked(f.message) for f in self.findings if f.level is Level.WARNING]
