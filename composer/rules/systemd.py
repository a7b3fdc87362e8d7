"""systemd units: installed to /etc/systemd/system and enabled as `systemctl enable` would, by an
absolute symlink TARGET.wants/UNIT (or .requires) for each target in the [Install] section."""

from __future__ import annotations

import posixpath
import re
import shlex
from dataclasses import replace

from composer.layout.model import Systemd
from composer.rules.assembly import Assembly, Claim
from composer.tree import Entry, Kind, is_under

UNIT_DIR = "/etc/systemd/system"
_PATH = re.compile(r"(?<![\w/])/[^\s\"';|&<>]+")


def parse_unit(text: str) -> dict[tuple[str, str], list[str]]:
    """(section, key) -> values, in order; continuation lines joined, comments skipped."""
    result: dict[tuple[str, str], list[str]] = {}
    section = ""
    pending = ""
    for raw in text.splitlines():
        line = pending + raw.strip()
        pending = ""
        if line.endswith("\\"):
            pending = line[:-1] + " "
            continue
        if not line or line[0] in "#;":
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
        elif "=" in line:
            key, value = line.split("=", 1)
            result.setdefault((section, key.strip()), []).append(value.strip())
    return result


class SystemdRule:
    def __init__(self, spec: Systemd, asm: Assembly) -> None:
        self.spec = spec
        self.asm = asm
        self.claim = Claim("systemd", spec.loc, from_source=True)
        self.units: dict[str, dict[tuple[str, str], list[str]]] = {}

    def apply(self) -> None:
        for index, unit in enumerate(self.spec.units):
            ref = replace(self.spec.src, path=posixpath.join(self.spec.src.path, unit))
            entry = self.asm.lookup(ref, f"systemd.units[{index}]")
            if entry is None:
                continue
            if entry.kind is not Kind.FILE or entry.content is None:
                self.asm.error(f"{ref} is not a regular file", self.spec.loc,
                               path=f"systemd.units[{index}]")
                continue
            path = posixpath.join(UNIT_DIR, unit)
            self.asm.place(entry.moved(path), self.claim)
            data = self.asm.read_small([entry.content])[entry.content]
            parsed = parse_unit(data.decode("utf-8", "replace"))
            self.units[path] = parsed
            self._enable(unit, path, parsed)

    def _enable(self, unit: str, path: str, parsed: dict[tuple[str, str], list[str]]) -> None:
        for key, suffix in (("WantedBy", "wants"), ("RequiredBy", "requires")):
            for value in parsed.get(("Install", key), []):
                for target in value.split():
                    link = posixpath.join(UNIT_DIR, f"{target}.{suffix}", unit)
                    self.asm.place(Entry(link, Kind.SYMLINK, 0o777, 0, 0, self.asm.epoch_ns,
                                         target=path), self.claim)
                    self.asm.report.changed(f"{link} -> {path} (enabled for {target})")
        if not any(("Install", k) in parsed for k in ("WantedBy", "RequiredBy")):
            self.asm.report.warn(f"{path} has no WantedBy= or RequiredBy=: nothing enables it")

    def check(self, greengrass_root: str | None) -> None:
        """Absolute paths in ExecStart= under the Greengrass root must resolve in the tree."""
        if greengrass_root is None:
            return
        for path, parsed in self.units.items():
            for command in parsed.get(("Service", "ExecStart"), []):
                for target, redirect in _paths(command):
                    if not is_under(target, greengrass_root):
                        continue
                    wanted = posixpath.dirname(target) if redirect else target
                    resolved = self.asm.tree.resolve(wanted)
                    if resolved is None or self.asm.tree.get(resolved) is None:
                        self._missing(path, target, wanted, redirect)

    def _missing(self, unit: str, target: str, wanted: str, redirect: bool) -> None:
        if redirect:
            # e.g. `>> /greengrass/v2/logs/loader.log` in 2.14+ units: the shell needs the
            # folder before the nucleus starts, so an empty one is kept instead of the logs
            self.asm.place(Entry(wanted, Kind.DIR, 0o700, 0, 0, self.asm.epoch_ns), self.claim)
            self.asm.report.changed(f"{wanted}: kept as an empty folder because {unit} "
                                    f"writes {target}")
            return
        self.asm.error(f"{unit}: ExecStart= runs {target}, which does not resolve in the "
                       "device tree", self.spec.loc, path="systemd.units",
                       hint="the unit and greengrass.to must use the same root path")


def _paths(command: str) -> list[tuple[str, bool]]:
    """Absolute paths in an ExecStart= value, and whether each is a shell redirection target."""
    found: list[tuple[str, bool]] = []
    try:
        words = shlex.split(command.lstrip("@-:+!"))
    except ValueError:
        words = command.split()
    text = " ".join(words)
    for match in _PATH.finditer(text):
        before = text[: match.start()].rstrip()
        found.append((match.group(0), before.endswith(">")))
    return found
