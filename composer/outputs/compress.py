"""zstd-compressed copies of images (`disk.img.zst`), through the `zstd` command.

bmaptool reads `.zst` images directly next to a bmap of the uncompressed image. The command is
run single-threaded at a fixed level so the output depends only on the input and the zstd
version; `--no-check` is not used (the frame checksum lets a reader detect corruption).
"""

from __future__ import annotations

from pathlib import Path

from composer import tools
from composer.errors import ComposerError

ZSTD_LEVEL = 3  # zstd's default: fast, and good on mostly-empty images


def compress_zstd(image: Path, out: Path, level: int = ZSTD_LEVEL) -> None:
    """Write `out`, the zstd compression of `image`; ComposerError if zstd is missing or fails.

    The layout loader already refused `outputs: [zst]` without zstd on PATH; this check only
    catches a zstd removed during the build."""
    exe = tools.find(tools.ZSTD)
    if exe is None:
        raise ComposerError("zstd output needs the `zstd` command, which was not found",
                            hint=f"{tools.ZSTD.install_hint}, or drop zst from outputs")
    # -T1: multi-threaded zstd frames can differ by worker count; --sparse is irrelevant here
    done = tools.run(exe, ["-q", "-f", f"-{level}", "-T1", "--no-progress", str(image), "-o",
                           str(out)])
    if done.returncode != 0:
        raise ComposerError(f"zstd failed on {image.name}: {done.stderr.strip()}")
