"""Native ext4 image writer (pure Python + crc32c), see docs/ext4.md.

The profile is Debian 12's `mke2fs -t ext4 -O ^resize_inode`: 1, 2 or 4 KiB blocks (mke2fs's
choice for the size unless the block_size option says), 256-byte inodes,
has_journal ext_attr dir_index filetype extent 64bit flex_bg sparse_super large_file huge_file
dir_nlink extra_isize metadata_csum. Images are planned from metadata alone, then file data is
streamed into the planned blocks, so the bytes never depend on the order data arrives in.
"""

from __future__ import annotations

from dataclasses import replace
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
from composer.fs.ext4.constants import BLOCK_SIZES, DEFAULT_BLOCK_SIZE, JOURNAL_MIN_BLOCKS
from composer.fs.ext4.planner import (
    NoSpace,
    Numbered,
    Options,
    Plan,
    Prepared,
    block_size_for,
    inodes_for,
    number,
    plan_auto,
    plan_fixed,
    prepare,
)
from composer.fs.ext4.sizetype import SMALL_TYPE_LIMIT, size_type
from composer.fs.ext4.writer import block_map, write_image

LABEL_MAX = 16  # s_volume_name


class Ext4Writer(FsWriter):
    fs = "ext4"
    options = {
        "inodes": OptionSpec(OptionType.INT),
        "reserved": OptionSpec(OptionType.PERCENT),
        "journal": OptionSpec(OptionType.SIZE_OR_NONE),
        "headroom": OptionSpec(OptionType.PERCENT),
        "block_size": OptionSpec(OptionType.INT, choices=BLOCK_SIZES),
    }

    def __init__(self) -> None:
        # this instance serves one partition (see FsWriter): check(), resolve_size() and
        # write() see the same request, so its entries are prepared once per block size and
        # planned once per size and options; a different request starts afresh
        self._memo: tuple[tuple[object, ...], dict[int, tuple[Prepared | None,
                                                              list[ComposerError]]]] | None = None
        self._plan_memo: dict[tuple[object, ...], Plan] = {}
        # the block-size-independent part of preparing, kept until the plans are made
        self._numbered: Numbered | None = None

    def check(self, req: WriteRequest) -> list[ComposerError]:
        errors = self._option_errors(req)
        opts = Options.of(req)
        if opts.block_size is not None and opts.block_size not in BLOCK_SIZES:
            return errors
        bs = self._block_size(req, opts)
        # jbd2 wants 1024 blocks at least (an auto size is checked with 4 KiB blocks)
        if opts.journal_bytes is not None and not opts.journal_default and \
                opts.journal_bytes < JOURNAL_MIN_BLOCKS * bs:
            errors.append(self._error(
                req, f"journal of {opts.journal_bytes} bytes is smaller than "
                f"{JOURNAL_MIN_BLOCKS} blocks of {bs} bytes ({JOURNAL_MIN_BLOCKS * bs})",
                f"use journal: {JOURNAL_MIN_BLOCKS * bs // (1 << 20)}MiB or more, or none"))
        prep, entry_errors = self._prepared(req, bs)
        errors.extend(entry_errors)
        if prep is not None and opts.inodes is not None and opts.inodes < prep.last_ino:
            errors.append(self._error(
                req, f"{prep.last_ino} inodes needed (the entries, lost+found and 10 reserved "
                f"inodes) but inodes is {opts.inodes}",
                f"set inodes to at least {prep.last_ino} or leave it unset"))
        if errors:
            return errors
        try:
            self._plan(req)
        except NoSpace:
            if req.size is None:
                return [self._error(req, "the content does not fit any ext4 image this writer "
                                    "can make", "split the content over several partitions")]
            return [self._too_small(req)]
        return []

    def resolve_size(self, req: WriteRequest) -> int:
        if req.size is not None:
            return req.size
        raise_all(self.check(req))
        return self._plan(req).image_size

    def write(self, req: WriteRequest, out: Path, store: ContentStore,
              progress: Progress = no_progress) -> WriteResult:
        return self.write_following(req, out, store, progress, no_progress)

    def planned_extents(self, req: WriteRequest) -> tuple[tuple[int, int], ...] | None:
        raise_all(self.check(req))
        return block_map(self._plan(req))

    def write_following(self, req: WriteRequest, out: Path, store: ContentStore,
                        progress: Progress, final: Progress) -> WriteResult:
        raise_all(self.check(req))
        plan = self._plan(req)
        # every plan is made: its memory is the image's now (the plan keeps what it needs of
        # the preparation; the other block size's, when both were tried, is dropped)
        self._numbered = None
        self._memo = None
        try:
            return write_image(req, plan, out, store, progress, final)
        finally:
            self._memo = None  # the plan is used up: free its memory
            self._plan_memo = {}

    def planned(self, req: WriteRequest) -> tuple[Plan, Numbered]:
        """The plan `write` would write for `req`, and its inode numbering: a device's build
        is planned from them (composer.fs.ext4.planner.replan)."""
        raise_all(self.check(req))
        return self._plan(req), number(req)

    def release(self) -> None:
        self._memo = None
        self._plan_memo = {}
        self._numbered = None

    # -------------------------------------------------------------------------------------

    @staticmethod
    def _error(req: WriteRequest, message: str, hint: str) -> ComposerError:
        return ComposerError(f"partition {req.name!r}: {message}", loc=req.loc, hint=hint)

    def _option_errors(self, req: WriteRequest) -> list[ComposerError]:
        errors: list[ComposerError] = []

        def err(message: str, hint: str) -> None:
            errors.append(self._error(req, message, hint))

        if req.label is not None and len(req.label.encode("utf-8")) > LABEL_MAX:
            err(f"label {req.label!r} is {len(req.label.encode('utf-8'))} bytes, ext4 allows "
                f"{LABEL_MAX}", "shorten the label")
        opts = Options.of(req)
        if opts.block_size is not None and opts.block_size not in BLOCK_SIZES:
            err(f"block_size {opts.block_size} is not one ext4 writes",
                "use 1024, 2048 or 4096, or leave it unset for mke2fs's choice")
            return errors
        if opts.inodes is not None and not 0 < opts.inodes < 2**32:
            err(f"inodes {opts.inodes} is outside what ext4 can count (1 to {2**32 - 1})",
                "leave inodes unset to size it from the content")
        if not 0 <= opts.reserved_pct <= 50:
            err(f"reserved {opts.reserved_pct}% is outside 0..50", "use 0 to 50 percent")
        return errors

    def _prepared(self, req: WriteRequest, block_size: int
                  ) -> tuple[Prepared | None, list[ComposerError]]:
        """The entries prepared for `block_size` (memoized per request and block size)."""
        key = (req.entries, req.name, req.uuid, req.epoch, req.loc, req.reserve)
        memo = self._memo
        if memo is None or memo[0] != key:  # equal requests, not the same objects
            memo = self._memo = (key, {})
            self._plan_memo = {}
            self._numbered = None
        per_size = memo[1]
        if block_size not in per_size:
            errors: list[ComposerError] = []

            def err(message: str, hint: str) -> None:
                errors.append(self._error(req, message, hint))

            if self._numbered is None:
                self._numbered = number(req)
            per_size[block_size] = (prepare(req, err, block_size, self._numbered), errors)
        prep, errs = per_size[block_size]
        return prep, list(errs)

    def _plan(self, req: WriteRequest) -> Plan:
        opts = Options.of(req)
        key = (req.size, tuple(sorted(req.options.items())))
        plan = self._plan_memo.get(key)
        if plan is not None:
            return plan
        if req.size is not None:
            prep = self._ready(req, self._block_size(req, opts))
            plan = plan_fixed(prep, opts, req.size)
        else:
            plan = self._plan_auto(req, opts)
            # writing at the resolved size gives this very plan (same geometry): keep it
            self._plan_memo[(plan.image_size, key[1])] = plan
        self._plan_memo[key] = plan
        return plan

    def _block_size(self, req: WriteRequest, opts: Options) -> int:
        """The block_size option, else mke2fs's for the size type (4 KiB for size: auto until
        it is planned), else 4 KiB when the content does not fit smaller blocks (a symlink
        target or xattrs longer than a block holds)."""
        if opts.block_size is not None or req.size is None:
            return opts.block_size or DEFAULT_BLOCK_SIZE
        bs = block_size_for(opts, req.size)
        if bs != DEFAULT_BLOCK_SIZE and self._prepared(req, bs)[1]:
            return DEFAULT_BLOCK_SIZE
        return bs

    def _ready(self, req: WriteRequest, block_size: int) -> Prepared:
        prep, errors = self._prepared(req, block_size)
        raise_all(errors)
        assert prep is not None
        return prep

    def _plan_auto(self, req: WriteRequest, opts: Options,
                   headroom_pct: float | None = None) -> Plan:
        """size: auto. With block_size given, the smallest image. Else the block size mke2fs
        would pick for the size the image comes out at, so that building at the resolved size
        gives the same plan: plan with 4 KiB blocks; if that size is of a 1 KiB type (below
        512 MiB), plan again with 1 KiB blocks. When the 1 KiB image would be 512 MiB or more,
        the 4 KiB one grows to 512 MiB (the smallest size mke2fs gives 4 KiB blocks)."""
        if opts.block_size is not None:
            return plan_auto(self._ready(req, opts.block_size), opts, headroom_pct)
        prep4 = self._ready(req, DEFAULT_BLOCK_SIZE)
        plan = plan_auto(prep4, opts, headroom_pct)
        small = size_type(plan.image_size).block_size
        if small == DEFAULT_BLOCK_SIZE:
            return plan
        del plan  # not held while the small blocks are planned (made again if they fail)
        prep, errors = self._prepared(req, small)
        if errors or prep is None:
            # the content needs 4 KiB blocks (`_block_size` says the same)
            return plan_auto(prep4, opts, headroom_pct)
        try:
            other = plan_auto(prep, opts, headroom_pct)
            if size_type(other.image_size).block_size == small:
                return other
        except NoSpace:
            pass
        return plan_fixed(prep4, opts, SMALL_TYPE_LIMIT)

    def _too_small(self, req: WriteRequest) -> ComposerError:
        opts = Options.of(req)
        assert req.size is not None
        given = req.size
        bs = self._block_size(req, opts)
        try:
            need = plan_auto(self._ready(req, bs), opts, headroom_pct=0).image_size
        except NoSpace:
            need = 0
        ways = self._ways_to_fit(req, opts)
        hint = (f"{' or '.join(ways)}, raise the partition size, or use size: auto" if ways
                else "raise the partition size or use size: auto")
        if need and need <= given:
            # it fits by size but not by inode count (inodes option too large for the size)
            inodes = inodes_for(self._ready(req, bs), opts, given // bs)
            return self._error(req, f"{inodes} inodes do not fit in {given} bytes", hint)
        detail = f"needs at least {need} bytes ({_mib(need)})" if need else "does not fit"
        return self._error(req, f"content {detail} with {bs}-byte blocks, size is {given} "
                           f"bytes ({_mib(given)})", hint)

    def _ways_to_fit(self, req: WriteRequest, opts: Options) -> list[str]:
        """The option changes that would make the content fit the fixed size."""
        assert req.size is not None
        bs = self._block_size(req, opts)
        tries: list[tuple[str, Options]] = []
        if opts.journal_default or opts.journal_bytes is not None:
            tries.append(("journal: none", replace(opts, journal_bytes=None,
                                                   journal_default=False)))
        if bs > min(BLOCK_SIZES):
            tries.append((f"block_size: {min(BLOCK_SIZES)}", replace(opts, block_size=1024)))
        if opts.inodes is not None:
            tries.append(("fewer inodes (or leave inodes unset)", replace(opts, inodes=None)))
        ways = []
        for label, alt in tries:
            prep, errors = self._prepared(req, self._block_size(req, alt))
            if errors or prep is None:
                continue
            try:
                plan_fixed(prep, alt, req.size)
            except NoSpace:
                continue
            ways.append(label)
        return ways


def _mib(n: int) -> str:
    return f"{n / (1 << 20):.1f} MiB"


__all__ = ["Ext4Writer"]
