"""The sha256 of the sources' files, made by a forked child while the build plans.

A build needs the digest of every file it scanned (the manifest's records, the provenance's
tree digests). From the scan to the first byte written the build is Python on one core: rules,
routing, planning. A child forked once the scan is done reads the files of the sources that
can be read in any order (folders, uncompressed tars) and hashes them on the other core
meanwhile; the writers then skip the hashing of what it already did
(`HashingStore`). A file the child has not reached when it is written is hashed as before, and
the child's answer is taken only when it is complete, so the digests never depend on who made
them (they are the same sha256 of the same bytes).

Only the process that started the child takes its answer: a partition's writer in a child
process of its own (composer/parallel.py) hashes as before.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator

from composer.content import ContentStore, stream_sha256
from composer.parallel import Forked, can_fork
from composer.sources import Scanned
from composer.tree import Content, Kind

DIGEST = 32


class Prehash:
    """The digests of `contents` (as read through `store`), made by a child process."""

    def __init__(self, store: ContentStore, contents: list[Content]) -> None:
        self._contents = contents
        self._owner = os.getpid()
        self._child: Forked[bytes] | None = Forked(lambda: _digests(store, contents),
                                                   "the process hashing the sources' files")
        self._child.start()

    @classmethod
    def start(cls, store: ContentStore, scanned: Iterable[Scanned]) -> Prehash | None:
        """A child hashing the files of the sources that read in any order; None when there
        are none (or no fork here)."""
        if not can_fork():
            return None
        wanted: dict[Content, None] = {}
        for source in scanned:
            if source.data.sequential:
                continue  # an archive read in its own order: once, by the writer
            for entry in source.entries.values():
                content = entry.content
                if entry.kind is Kind.FILE and content is not None and content.size and \
                        content.inline is None:
                    wanted[content] = None
        # by source, as ContentStore.stream hands them over: the child's digests then come in
        # this list's order, with no map from content to place to hold
        return cls(store, sorted(wanted, key=_source_of)) if wanted else None

    def take(self, wait: bool) -> Iterator[tuple[Content, bytes]] | None:
        """(content, digest) pairs, once the child is done (`wait`: until it is); None when
        they are not there yet, or not for this process, or the child failed (the writers
        hash then). Pairs, not a dict: the caller keeps them in its own (one map, not two,
        at the memory peak of a build of many files)."""
        child = self._child
        if child is None or os.getpid() != self._owner or (not wait and not child.ready()):
            return None
        self._child = None
        contents, self._contents = self._contents, []
        try:
            blob = child.result()
        except Exception:  # noqa: BLE001 - a file the child could not read: the writer says why
            return None
        return zip(contents, (blob[i:i + DIGEST] for i in range(0, len(blob), DIGEST)),
                   strict=True)

    def stop(self) -> None:
        """The build ended without taking the digests: end the child."""
        if self._child is not None and os.getpid() == self._owner:
            self._child.stop()
            self._child = None


def _source_of(content: Content) -> str:
    return content.source


def _digests(store: ContentStore, contents: list[Content]) -> bytes:
    """In the child: each content's sha256, in the order of `contents`."""
    out = bytearray()
    for i, (content, stream) in enumerate(store.stream(contents)):
        if content is not contents[i]:
            raise LookupError("the store handed the contents over in another order")
        out += stream_sha256(stream)
    if len(out) != DIGEST * len(contents):
        raise LookupError("the store handed over fewer contents than asked for")
    return bytes(out)
