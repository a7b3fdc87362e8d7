"""Native ext4 image writer (pure Python + crc32c), see docs/ext4.md.

The profile is Debian 12's `mke2fs -t ext4 -O ^resize_inode`: 4 KiB blocks, 256-byte inodes,
has_journal ext_attr dir_index filetype extent 64bit flex_bg sparse_super large_file huge_file
dir_nlink extra_isize metadata_csum. Images are planned from metadata alone, then file data is
streamed into the planned blocks, so the bytes never depend on the order data arrives in.
"""

from __future__ import annotations

from pathlib import Path

from composer.content import ContentStore
from composer.errors import ComposerError, raise_all
from composer.fs.base import (
    FsWriter,
    OptionSpec,
    OptionType,
    Progress,
    WriteRequest,
    WriteResult,
    no_progress,
)
from composer.fs.ext4.constants import BLOCK_SIZE, JOURNAL_MIN_BLOCKS
from composer.fs.ext4.planner import (
    NoSpace,
    Options,
    Plan,
    Prepared,
    inodes_for,
    plan_auto,
    plan_fixed,
    prepare,
)
from composer.fs.ext4.writer import write_image

LABEL_MAX = 16  # s_volume_name


class Ext4Writer(FsWriter):
    fs = "ext4"
    options = {
        "inodes": OptionSpec(OptionType.INT, "number of inodes (default: one per 16 KiB, "
                             "at least the entries plus headroom)"),
        "reserved": OptionSpec(OptionType.PERCENT, "blocks reserved for root, in percent "
                               "(default 5)"),
        "journal": OptionSpec(OptionType.SIZE_OR_NONE, "journal size, or none (default: "
                              "mke2fs's size for the file system size)"),
        "headroom": OptionSpec(OptionType.PERCENT, "free space added to an auto-sized image, "
                               "in percent of the used blocks (default 10)"),
    }

    def __init__(self) -> None:
        # check(), resolve_size() and write() see the same entries: plan them once
        self._memo: tuple[tuple[object, ...], Prepared | None, list[ComposerError]] | None = None
        self._plan_memo: tuple[Prepared, dict[tuple[object, ...], Plan]] | None = None

    def check(self, req: WriteRequest) -> list[ComposerError]:
        errors, _ = self._prepare(req)
        if errors:
            return errors
        try:
            self._plan(req)
        except NoSpace:
            errors.append(self._too_small(req))
        return errors

    def resolve_size(self, req: WriteRequest) -> int:
        if req.size is not None:
            return req.size
        try:
            return self._plan(req).image_size
        except NoSpace:
            raise self._error(req, "the content does not fit any ext4 image this writer can "
                              "make", "split the content over several partitions") from None

    def write(self, req: WriteRequest, out: Path, store: ContentStore,
              progress: Progress = no_progress) -> WriteResult:
        raise_all(self.check(req))
        try:
            return write_image(req, self._plan(req), out, store, progress)
        finally:
            self._memo = self._plan_memo = None  # the plan is used up: free its memory

    # -------------------------------------------------------------------------------------

    @staticmethod
    def _error(req: WriteRequest, message: str, hint: str) -> ComposerError:
        return ComposerError(f"partition {req.name!r}: {message}", loc=req.loc, hint=hint)

    def _prepare(self, req: WriteRequest) -> tuple[list[ComposerError], Prepared | None]:
        errors: list[ComposerError] = []

        def err(message: str, hint: str) -> None:
            errors.append(self._error(req, message, hint))

        if req.label is not None and len(req.label.encode("utf-8")) > LABEL_MAX:
            err(f"label {req.label!r} is {len(req.label.encode('utf-8'))} bytes, ext4 allows "
                f"{LABEL_MAX}", "shorten the label")
        opts = Options.of(req)
        if opts.journal_bytes is not None and not opts.journal_default and \
                opts.journal_bytes < JOURNAL_MIN_BLOCKS * BLOCK_SIZE:
            err(f"journal of {opts.journal_bytes} bytes is smaller than the minimum "
                f"{JOURNAL_MIN_BLOCKS * BLOCK_SIZE}", "use journal: 4MiB or more, or none")
        if opts.inodes is not None and not 0 < opts.inodes < 2**32:
            err(f"inodes {opts.inodes} is outside what ext4 can count (1 to {2**32 - 1})",
                "leave inodes unset to size it from the content")
        if not 0 <= opts.reserved_pct <= 50:
            err(f"reserved {opts.reserved_pct}% is outside 0..50", "use 0 to 50 percent")
        prep, entry_errors = self._prepare_entries(req)
        errors.extend(entry_errors)
        if prep is not None and opts.inodes is not None and opts.inodes < prep.last_ino:
            err(f"{prep.last_ino} inodes needed (the entries, lost+found and 10 reserved "
                f"inodes) but inodes is {opts.inodes}",
                f"set inodes to at least {prep.last_ino} or leave it unset")
        return errors, (prep if not errors else None)

    def _prepare_entries(self, req: WriteRequest) -> tuple[Prepared | None, list[ComposerError]]:
        key = (req.entries, req.name, req.uuid, req.epoch, req.loc)
        memo = self._memo
        if memo is not None and memo[0][0] is req.entries and memo[0][1:] == key[1:]:
            return memo[1], list(memo[2])
        errors: list[ComposerError] = []

        def err(message: str, hint: str) -> None:
            errors.append(self._error(req, message, hint))

        prep = prepare(req, err)
        self._memo = (key, prep, list(errors))
        return prep, errors

    def _plan(self, req: WriteRequest) -> Plan:
        errors, prep = self._prepare(req)
        raise_all(errors)
        assert prep is not None
        opts_key = tuple(sorted(req.options.items()))
        # one snapshot of the memo, so a writer shared between threads can only miss it
        snapshot = self._plan_memo
        if snapshot is not None and snapshot[0] is prep:
            memo = snapshot[1]
        else:
            memo = {}
            self._plan_memo = (prep, memo)
        plan = memo.get((req.size, opts_key))
        if plan is None:
            opts = Options.of(req)
            if req.size is None:
                plan = plan_auto(prep, opts)
                # writing at the resolved size gives this very plan (same geometry): keep it
                memo[(plan.image_size, opts_key)] = plan
            else:
                plan = plan_fixed(prep, opts, req.size)
            memo[(req.size, opts_key)] = plan
        return plan

    def _too_small(self, req: WriteRequest) -> ComposerError:
        _, prep = self._prepare(req)
        assert prep is not None
        opts = Options.of(req)
        try:
            need = plan_auto(prep, opts, headroom_pct=0).image_size
        except NoSpace:
            need = 0
        assert req.size is not None
        given = req.size
        detail = f"needs at least {need} bytes ({_mib(need)})" if need else "does not fit"
        if need and need <= given:
            # it fits by size but not by inode count (inodes option too large for the size)
            inodes = inodes_for(prep, opts, given // BLOCK_SIZE)
            return self._error(req, f"{inodes} inodes do not fit in {given} bytes",
                               "lower inodes or raise the size")
        return self._error(req, f"content {detail}, size is {given} bytes ({_mib(given)})",
                           "raise the partition size or use size: auto")


def _mib(n: int) -> str:
    return f"{n / (1 << 20):.1f} MiB"


__all__ = ["Ext4Writer"]
