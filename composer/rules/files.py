"""`files:` entries: copies with excludes, inline content, folders and symlinks.

Excludes are matched like .gitignore lines: a pattern without '/' matches a name at any depth,
one with '/' matches the path from the copy's root, and a trailing '/' matches folders only.
`owner` applies to everything a copy places; `mode` to the entry at `to` itself.
"""

from __future__ import annotations

import fnmatch
from dataclasses import replace

from composer.layout.model import FileAction, FileRule
from composer.rules.assembly import Assembly
from composer.tree import Content, Entry, Kind
from composer.types import Claim


def excluded(rel: str, entry: Entry, patterns: tuple[str, ...]) -> bool:
    for pattern in patterns:
        dir_only = pattern.endswith("/")
        pattern = pattern.rstrip("/")
        if dir_only and entry.kind is not Kind.DIR:
            continue
        subject = rel if "/" in pattern else rel.rsplit("/", 1)[-1]
        if fnmatch.fnmatchcase(subject, pattern.lstrip("/")):
            return True
    return False


class FilesRule:
    def __init__(self, rules: tuple[FileRule, ...], asm: Assembly) -> None:
        self.rules = rules
        self.asm = asm

    def apply(self) -> None:
        for index, rule in enumerate(self.rules):
            claim = Claim(f"files[{index}]", rule.loc, from_source=rule.action is FileAction.COPY)
            if rule.action is FileAction.COPY:
                self._copy(rule, claim, index)
            else:
                self.asm.place(self._made(rule), claim, override=True)

    def _copy(self, rule: FileRule, claim: Claim, index: int) -> None:
        assert rule.src is not None
        if self.asm.lookup(rule.src, f"files[{index}].from") is None:
            return

        def keep(rel: str, entry: Entry) -> bool:
            if excluded(rel, entry, rule.exclude):
                self.asm.report.dropped(f"{rule.to}/{rel} (files[{index}].exclude)")
                return False
            return True

        def adjust(entry: Entry) -> Entry:
            if rule.owner is not None:
                entry = replace(entry, uid=rule.owner[0], gid=rule.owner[1])
            if rule.mode is not None and entry.path == rule.to:
                entry = replace(entry, mode=rule.mode)
            return entry

        self.asm.copy(rule.src, rule.to, claim, keep=keep, adjust=adjust)

    def _made(self, rule: FileRule) -> Entry:
        uid, gid = rule.owner or (0, 0)
        epoch = self.asm.epoch_ns
        if rule.action is FileAction.CONTENT:
            assert rule.content is not None
            return Entry(rule.to, Kind.FILE, _mode(rule, 0o644), uid, gid, epoch,
                         content=Content.of_bytes(rule.content))
        if rule.action is FileAction.DIR:
            return Entry(rule.to, Kind.DIR, _mode(rule, 0o755), uid, gid, epoch)
        return Entry(rule.to, Kind.SYMLINK, 0o777, uid, gid, epoch, target=rule.symlink)


def _mode(rule: FileRule, default: int) -> int:
    return rule.mode if rule.mode is not None else default
