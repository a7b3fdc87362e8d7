"""Independent partitions written side by side, in forked child processes.

The writers are Python: threads would take turns on the interpreter lock, so a partition goes
to a child process that fork(2) made, with the whole plan already in its memory (nothing is
pickled on the way in). The child sends back only what the parent cannot see: the write
result, the image digest, the names of the outputs it made and the sha256 of every file it
read. Each partition is written by exactly one process from the same plan, so the bytes do not
depend on how many run at once.
"""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import pickle
import signal
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
    raised. `stop()` ends a child that is no longer wanted (the build failed or was stopped).

    Created unstarted so the caller can hold it before `start()` forks: a signal that arrives
    while it starts is raised after the handle is the caller's, whose cleanup then stops it.
    """

    def __init__(self, work: Callable[[], T], label: str) -> None:
        self._label = label
        context = multiprocessing.get_context("fork")
        self._receive, self._send = context.Pipe(duplex=False)
        # not a multiprocessing daemon: a daemon may not fork children of its own, and a
        # partition's child forks the one that hashes its image (composer/outputs/follow.py);
        # children are stopped by stop() and die with their parent (_die_with) all the same
        self._process = context.Process(target=_run, args=(work, self._send, os.getpid()),
                                        name=label, daemon=False)
        self._started = False

    def start(self) -> None:
        # the child inherits this mask: a SIGINT or SIGTERM that arrives before the child has
        # set its own dispositions (_run) waits instead of running the parent's handler there
        old = signal.pthread_sigmask(signal.SIG_BLOCK, _STOP_SIGNALS)
        try:
            self._process.start()
            self._started = True
        finally:
            self._send.close()  # the child's end: EOF here when the child dies unanswered
            signal.pthread_sigmask(signal.SIG_SETMASK, old)

    def ready(self) -> bool:
        """The child has answered (result() will not wait)."""
        return self._receive.poll()

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
        if self._started:
            if self._process.is_alive():
                self._process.terminate()  # the child dies of it at once (_run)
                self._process.join(STOP_GRACE_S)
                if self._process.is_alive():
                    self._process.kill()
            self._process.join()
        self._receive.close()


_STOP_SIGNALS = {signal.SIGINT, signal.SIGTERM}


def _die_with(parent: int) -> None:
    """End this child when the parent dies, even of SIGKILL: an orphan would go on writing
    into a staging folder nobody publishes, holding the output folder's lock (it shares the
    parent's open lock file) so the next build would wait for it. Linux only (prctl)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):  # not Linux: an orphan finishes its work, then exits
        return
    if os.getppid() != parent:  # the parent died before prctl took effect
        raise SystemExit(1)  # multiprocessing ends the child quietly with exit code 1


_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def _run(work: Callable[[], T], send: Connection, parent: int) -> None:
    # The parent alone decides and reports: Ctrl-C reaches the whole process group, and the
    # parent stops its children with SIGTERM, which must end a child at once and silently (the
    # handler inherited from the parent would raise there, and print a child's traceback after
    # the parent's last word). Then the mask inherited from Forked.start() is lifted.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, _STOP_SIGNALS)
    _die_with(parent)
    try:
        answer: tuple[bool, object] = (True, work())
    except BaseException as exc:  # noqa: BLE001 - handed to the parent, which raises it
        answer = (False, exc)
    try:
        send.send_bytes(_pickled(answer))  # result() unpickles it with recv()
    except OSError:  # the parent stopped listening: it has gone on without this answer
        pass
    send.close()


def _pickled(answer: tuple[bool, object]) -> bytes:
    """The answer, or, for an error that cannot be pickled, its text."""
    try:
        return pickle.dumps(answer)
    except Exception:  # noqa: BLE001 - whatever pickling raises, the text still travels
        text = "".join(traceback.format_exception_only(answer[1])).strip() \
            if isinstance(answer[1], BaseException) else "an unpicklable result"
        return pickle.dumps((False, ComposerError(text)))
