"""systemd units: found where systemd looks for them, installed at the same place on the device,
and enabled as `systemctl enable` would: an absolute symlink
/etc/systemd/system/TARGET.wants/UNIT (or .requires) to the unit for each target of its [Install]
section, and /etc/systemd/system/ALIAS for each Alias=.

`systemd.from` may be the snapshot's root or any of the unit folders: the unit is looked up in
/etc/systemd/system, /lib/systemd/system and /usr/lib/systemd/system below it, in systemd's order
of precedence (systemd.unit(5), "Unit File Load Path"). Yocto's meta-aws installs
greengrass.service to ${systemd_unitdir}/system and leaves only the .wants link in /etc."""

from __future__ import annotations

import posixpath
import re
import shlex

from composer.layout.model import Systemd
from composer.rules.assembly import Assembly
from composer.tree import Entry, Kind, is_under
from composer.types import Claim

UNIT_DIR = "/etc/systemd/system"
UNIT_DIRS = (UNIT_DIR, "/lib/systemd/system", "/usr/lib/systemd/system")
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
            found = self._find(unit, f"systemd.units[{index}]")
            if found is None:
                continue
            entry, path = found
            assert entry.content is not None
            self.asm.place(entry.moved(path), self.claim)
            data = self.asm.read_small([entry.content])[entry.content]
            parsed = parse_unit(data.decode("utf-8", "replace"))
            self.units[path] = parsed
            self._enable(unit, path, parsed)

    def _candidates(self, unit: str) -> list[tuple[str, str]]:
        """(path in the source, path on the device) where the unit may be, in systemd's order."""
        src = self.spec.src.path.rstrip("/") or "/"
        base = src
        for folder in sorted(UNIT_DIRS, key=len, reverse=True):  # /usr/lib before /lib
            if src.endswith(folder):
                base = src[: -len(folder)] or "/"
                break
        found = [(posixpath.join(base, folder.lstrip("/"), unit), posixpath.join(folder, unit))
                 for folder in UNIT_DIRS]
        if base == src and src != "/":  # a folder of unit files: installed to /etc
            found.append((posixpath.join(src, unit), posixpath.join(UNIT_DIR, unit)))
        return found

    def _find(self, unit: str, where: str) -> tuple[Entry, str] | None:
        entries = self.asm.sources[self.spec.src.source].entries
        candidates = self._candidates(unit)
        for path, device in candidates:
            entry = entries.get(path)
            if entry is None:
                continue
            if entry.kind is Kind.SYMLINK and entry.target is not None:
                # `systemctl link` or a packaging symlink: follow it inside the snapshot
                base = path[: -len(device)] if path.endswith(device) else ""
                target = posixpath.normpath(posixpath.join(posixpath.dirname(device),
                                                           entry.target))
                if target == "/dev/null":
                    self.asm.error(f"{unit} is masked in the snapshot ({device} -> /dev/null)",
                                   self.spec.loc, path=where,
                                   hint="unmask it on the golden device (systemctl unmask)")
                    return None
                linked = entries.get(posixpath.join(base or "/", target.lstrip("/")))
                if linked is not None and linked.kind is Kind.FILE:
                    entry, device = linked, target
            if entry.kind is not Kind.FILE or entry.content is None:
                self.asm.error(f"{self.spec.src.source}:{path} is not a regular file",
                               self.spec.loc, path=where)
                return None
            return entry, device
        looked = ", ".join(p for p, _ in candidates)
        self.asm.error(f"{unit} is not in source {self.spec.src.source!r} (looked in {looked})",
                       self.spec.loc, path=where,
                       hint="point systemd.from at the snapshot's root or at the folder that "
                       "holds the unit (systemctl show -p FragmentPath UNIT says where it is)")
        return None

    def _enable(self, unit: str, path: str, parsed: dict[tuple[str, str], list[str]]) -> None:
        for key, suffix in (("WantedBy", "wants"), ("RequiredBy", "requires")):
            for value in parsed.get(("Install", key), []):
                for target in value.split():
                    link = posixpath.join(UNIT_DIR, f"{target}.{suffix}", unit)
                    self._link(link, path, f"enabled for {target}")
        for value in parsed.get(("Install", "Alias"), []):
            for alias in value.split():
                self._link(posixpath.join(UNIT_DIR, alias), path, "its Alias=")
        if not any(("Install", k) in parsed for k in ("WantedBy", "RequiredBy")):
            self.asm.report.warn(f"{path} has no WantedBy= or RequiredBy=: nothing enables it")

    def _link(self, link: str, path: str, why: str) -> None:
        self.asm.place(Entry(link, Kind.SYMLINK, 0o777, 0, 0, self.asm.epoch_ns, target=path),
                       self.claim)
        self.asm.report.changed(f"{link} -> {path} ({why})")

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
