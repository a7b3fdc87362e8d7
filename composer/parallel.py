"""Independent partitions written side by side, in forked child processes.

The writers are Python: threads would take turns on the interpreter lock, so a partition goes
to a child process that fork(2) made, with the whole plan already in its memory (nothing is
pickled on the way in). The child sends back only what the parent cannot see: the write
result, the image digest, the names of the outputs it made and the sha256 of every file it
read. Each partition is written by exactly one process from the same plan, so the bytes do not
depend on how many run at once.
"""

from __future__ import annotations

import multiprocessing
import os
import traceback
from collections.abc import Callable, Sequence
from multiprocessing.connection import Connection
from typing import Generic, TypeVar

from composer.errors import ComposerError

T = TypeVar("T")

# a file's bytes cost about as much as this many bytes of data to plan, pack and record
ENTRY_WEIGHT = 40_000
STOP_GRACE_S = 10.0


def cpus() -> int:
    """The CPUs this process may run on (a container or taskset may allow fewer than exist)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def can_fork() -> bool:
    return "fork" in multiprocessing.get_all_start_methods()


def split(costs: Sequence[int], jobs: int) -> tuple[list[int], list[list[int]]]:
    """Which partitions the parent writes and which each child writes: the heaviest stays in
    the parent, the others go to at most jobs - 1 children, each to the least loaded one
    (longest first). One job, or a single partition: the parent writes everything."""
    order = sorted(range(len(costs)), key=lambda i: (-costs[i], i))
    children = max(0, min(jobs - 1, len(costs) - 1))
    if not children or not can_fork():
        return list(range(len(costs))), []
    mine, groups = [order[0]], [[] for _ in range(children)]
    loads = [0] * children
    for i in order[1:]:
        least = loads.index(min(loads))
        groups[least].append(i)
        loads[least] += costs[i]
    return mine, [sorted(g) for g in groups if g]


class Forked(Generic[T]):
    """`work()` run in a forked child; `result()` gives what it returned or raises what it
    raised. `stop()` ends a child that is no longer wanted (the build failed elsewhere)."""

    def __init__(self, work: Callable[[], T], label: str) -> None:
        self._label = label
        context = multiprocessing.get_context("fork")
        self._receive, send = context.Pipe(duplex=False)
        self._process = context.Process(target=_run, args=(work, send), name=label, daemon=True)
        self._process.start()
        send.close()  # the child's end: EOF here when the child dies without answering

    def result(self) -> T:
        try:
            ok, value = self._receive.recv()
        except EOFError:
            self._process.join()
            raise ComposerError(f"{self._label} stopped (exit code {self._process.exitcode}) "
                                "before it finished", hint="it may have run out of memory; "
                                "try again with --jobs 1") from None
        finally:
            self._receive.close()
        self._process.join()
        if not ok:
            raise value
        return value  # type: ignore[no-any-return]

    def stop(self) -> None:
        if self._process.is_alive():
            self._process.terminate()
            # a child that got SIGINT with us (Ctrl-C reaches the whole process group) ignores
            # the SIGTERM while it stops (cli._on_signal); past that grace, SIGKILL
            self._process.join(STOP_GRACE_S)
            if self._process.is_alive():
                self._process.kill()
        self._process.join()
        self._receive.close()


def _run(work: Callable[[], T], send: Connection) -> None:
    try:
        answer: tuple[bool, object] = (True, work())
    except BaseException as exc:  # noqa: BLE001 - handed to the parent, which raises it
        answer = (False, exc)
    try:
        send.send(answer)
    except Exception:  # noqa: BLE001 - an error that cannot be pickled: its text, then
        text = "".join(traceback.format_exception_only(answer[1])).strip() \
            if isinstance(answer[1], BaseException) else "an unpicklable result"
        send.send((False, ComposerError(text)))
    send.close()
