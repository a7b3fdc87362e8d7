"""The raw image inside an Android sparse (.simg) or zstd (.zst) image, expanded into a
temporary folder (bounded memory, holes kept; removed afterwards) for `inspect` and `diff`.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from enum import StrEnum
from pathlib import Path

from composer.errors import ComposerError
from composer.outputs.simg_reader import expand_simg


class ImageKind(StrEnum):
    DISK = "disk"
    TAR = "tar"  # or any archive libarchive reads
    VFAT = "vfat"
    EXT4 = "ext4"
    SIMG = "simg"
    ZSTD = "zst"


@contextmanager
def expanded(path: Path, kind: ImageKind) -> Iterator[Path]:
    """The raw image `path` holds: itself, or (a .simg or .zst) its expansion in a new
    temporary folder, removed when the context ends."""
    if kind not in (ImageKind.SIMG, ImageKind.ZSTD):
        yield path
        return
    folder = Path(tempfile.mkdtemp(prefix="compose-diff-"))
    try:
        out = folder / path.name.removesuffix(".zst").removesuffix(".simg")
        if kind is ImageKind.SIMG:
            expand_simg(path, out)
        else:
            _unzstd(path, out)
        yield out
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _unzstd(path: Path, out: Path) -> None:
    if shutil.which("zstd") is None:
        raise ComposerError(f"{path.name}: reading .zst images needs the `zstd` command, which "
                            "was not found", hint="apt-get install zstd")
    # a build folder's outputs are links, which zstd skips without -f (out is a new file)
    done = subprocess.run(["zstd", "-d", "-q", "-f", "--sparse", "-o", str(out),
                           str(path.resolve())],
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise ComposerError(f"zstd could not expand {path.name}: {done.stderr.strip()}")


