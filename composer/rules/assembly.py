"""The state rules share while the device tree is assembled: the tree, who placed each path,
the report, and errors collected so that a layout's problems are reported together."""

from __future__ import annotations

import fnmatch
import posixpath
from collections.abc import Callable, Iterable
from dataclasses import replace

from composer.content import ContentStore
from composer.errors import ComposerError, Loc
from composer.layout.model import SourceRef
from composer.report import Report
from composer.sources import Scanned
from composer.tree import Content, DeviceTree, Entry, Kind, is_under, parent, sort_key
from composer.types import Claim


class Assembly:
    def __init__(self, sources: dict[str, Scanned], store: ContentStore, epoch: int,
                 small: dict[Content, bytes] | None = None) -> None:
        self.sources = sources
        self.store = store
        self.epoch = epoch
        self.epoch_ns = epoch * 1_000_000_000
        self.tree = DeviceTree()
        self.report = Report()
        self.errors: list[ComposerError] = []
        self.claims: dict[str, Claim] = {}
        self._small: dict[Content, bytes] = small if small is not None else {}

    def fork(self) -> Assembly:
        """A copy whose tree, report and claims can change without touching this one (one
        device's build on top of the golden assembly); sources and the small-file cache are
        shared."""
        twin = Assembly(self.sources, self.store, self.epoch, small=self._small)
        twin.tree = DeviceTree(self.tree.entries())
        twin.report = Report(list(self.report.findings), dict(self.report.masks))
        twin.claims = dict(self.claims)
        return twin

    def error(self, message: str, loc: Loc | None, hint: str | None = None,
              path: str | None = None) -> None:
        self.errors.append(ComposerError(message, loc, hint, path))

    # --- reading sources -----------------------------------------------------------------

    def lookup(self, ref: SourceRef, what: str) -> Entry | None:
        entry = self.sources[ref.source].entries.get(ref.path)
        if entry is None:
            self.error(f"{ref} does not exist in source {ref.source!r}", ref.loc,
                       path=what, hint="check the path inside the snapshot")
        return entry

    def source_subtree(self, ref: SourceRef) -> list[Entry]:
        """The entry at `ref` and everything below it, sorted, with paths inside the source."""
        entries = self.sources[ref.source].entries
        return sorted((e for p, e in entries.items() if is_under(p, ref.path)),
                      key=lambda e: sort_key(e.path))

    def read_small(self, contents: Iterable[Content]) -> dict[Content, bytes]:
        """Read a few small files (configs, recipes) into memory, in one pass per source.

        Results are kept: a compressed archive can only be read from its start, so the rules
        prefetch what they will need (`prefetch`) and later reads cost nothing."""
        wanted = list(dict.fromkeys(contents))
        missing = [c for c in wanted if c not in self._small and c.inline is None]
        for content, stream in self.store.stream(missing):
            self._small[content] = stream.read()
        return {c: c.inline if c.inline is not None else self._small[c] for c in wanted}

    def small_files(self, ref: SourceRef, patterns: Iterable[str]) -> list[Content]:
        """The files below `ref` whose path (relative to it) matches one of `patterns`."""
        if ref.path not in self.sources[ref.source].entries:
            return []
        globs = tuple(patterns)
        return [e.content for e in self.source_subtree(ref)
                if e.kind is Kind.FILE and e.content is not None
                and any(fnmatch.fnmatchcase(e.path[len(ref.path):].lstrip("/"), g)
                        for g in globs)]

    # --- placing entries -----------------------------------------------------------------

    def place(self, entry: Entry, claim: Claim, override: bool = False) -> None:
        """Put `entry` at its device path; a second claim on one path is an error unless it is an
        explicit override of something copied from a source, or two claims on one directory."""
        if entry.mtime_ns > self.epoch_ns:
            entry = entry.at_time(self.epoch_ns)
        previous = self.claims.get(entry.path)
        existing = self.tree.get(entry.path)
        if previous is not None and existing is not None:
            both_dirs = existing.kind is Kind.DIR and entry.kind is Kind.DIR
            if override and previous.from_source:
                self.report.changed(f"{entry.path}: {claim.what} overrides what "
                                    f"{previous.what} copied")
            elif not both_dirs:
                hint = ("remove one, or write the later one as content/dir/symlink to override "
                        "a copied file") if previous.from_source else \
                    f"two rules write {entry.path}: keep only one of them"
                self.error(f"{entry.path} is claimed by both {previous.what} (line "
                           f"{previous.loc.line}) and {claim.what}", claim.loc, hint=hint)
                return
            elif not override:
                return  # a directory both copy: the first one's metadata stands
        self.tree.put(entry)
        self.claims[entry.path] = claim
        self.ensure_parents(entry.path)

    def ensure_parents(self, path: str) -> None:
        """Directories that nothing declared get 0755 root:root and the build's epoch."""
        current = parent(path)
        while current not in self.tree:
            self.tree.put(Entry(current, Kind.DIR, 0o755, 0, 0, self.epoch_ns))
            if current == "/":
                break
            current = parent(current)

    def copy(self, ref: SourceRef, to: str, claim: Claim,
             keep: Callable[[str, Entry], bool] = lambda rel, e: True,
             adjust: Callable[[Entry], Entry] = lambda e: e) -> int:
        """Copy the subtree at `ref` to `to`; `keep(rel, entry)` filters by the path relative
        to the copy root ("" for the root itself). Returns how many entries were placed."""
        placed = 0
        dropped_dirs: list[str] = []
        for entry in self.source_subtree(ref):
            rel = entry.path[len(ref.path):].lstrip("/") if ref.path != "/" else \
                entry.path.lstrip("/")
            if dropped_dirs and any(rel == d or rel.startswith(d + "/") for d in dropped_dirs):
                continue
            if rel and not keep(rel, entry):
                if entry.kind is Kind.DIR:
                    dropped_dirs.append(rel)
                continue
            moved = entry.moved(posixpath.join(to, rel) if rel else to)
            if moved.kind is Kind.HARDLINK and moved.target is not None:
                moved = replace(moved, target=_remap(moved.target, ref.path, to))
            self.place(adjust(moved), claim)
            placed += 1
        return placed


def _remap(path: str, old_root: str, new_root: str) -> str:
    """A hard link target inside the copied subtree moves with it. A target outside it was not
    copied: mark it with a NUL (no device path has one) so the link becomes a file of its own."""
    if is_under(path, old_root):
        rel = path[len(old_root):].lstrip("/") if old_root != "/" else path.lstrip("/")
        return posixpath.join(new_root, rel) if rel else new_root
    return "\0" + path
