"""TEST ONLY: a planted nondeterminism, so the tests can prove that `compose reproduce` catches
one and names it. Never set COMPOSER_TEST_WALLCLOCK in a real build.

COMPOSER_TEST_WALLCLOCK=PARTITION:PATH gives the entry at PATH (a path inside that partition's
image, "/" for its root) the wall clock, in nanoseconds, as its mtime: the kind of leak (a
time.time() in a writer) that makes two builds of the same inputs differ.
"""

from __future__ import annotations

import os
import time
from dataclasses import replace

from composer.tree import Entry

ENV = "COMPOSER_TEST_WALLCLOCK"


def stamp_wallclock(partition: str, entries: tuple[Entry, ...]) -> tuple[Entry, ...]:
    wanted = os.environ.get(ENV, "")
    name, _, path = wanted.partition(":")
    if not wanted or name != partition:
        return entries
    now = time.time_ns()
    return tuple(replace(e, mtime_ns=now) if e.path == path else e for e in entries)
