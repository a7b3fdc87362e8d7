"""The raw image inside an Android sparse (.simg), zstd (.zst), gzip, xz or bzip2 file (a
compressed archive such as app.tar.gz, or a compressed image), expanded into a temporary folder
(streamed: bounded memory; holes kept for .simg and .zst; removed afterwards) for `inspect`,
`diff` and `verify --deep`.
"""

from __future__ import annotations

import bz2
import gzip
import lzma
import shutil
import subprocess
import tempfile
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from enum import StrEnum
from pathlib import Path
from typing import BinaryIO

from composer.errors import ComposerError
from composer.outputs.simg_reader import expand_simg

CHUNK = 1 << 20


class ImageKind(StrEnum):
    DISK = "disk"
    TAR = "tar"  # or any archive libarchive reads
    VFAT = "vfat"
    EXT4 = "ext4"
    SIMG = "simg"
    ZSTD = "zst"
    GZIP = "gzip"
    XZ = "xz"
    BZIP2 = "bzip2"


# the containers expanded() opens, and the suffix each gives its file name
CONTAINERS = {ImageKind.SIMG: ".simg", ImageKind.ZSTD: ".zst", ImageKind.GZIP: ".gz",
              ImageKind.XZ: ".xz", ImageKind.BZIP2: ".bz2"}
_OPENERS: dict[ImageKind, Callable[[Path], BinaryIO]] = {
    ImageKind.GZIP: lambda p: gzip.open(p, "rb"),  # type: ignore[dict-item]
    ImageKind.XZ: lambda p: lzma.open(p, "rb"),  # type: ignore[dict-item]
    ImageKind.BZIP2: lambda p: bz2.open(p, "rb"),  # type: ignore[dict-item]
}


@contextmanager
def expanded(path: Path, kind: ImageKind) -> Iterator[Path]:
    """The raw image `path` holds: itself, or (a container, CONTAINERS) its expansion in a new
    temporary folder, removed when the context ends."""
    if kind not in CONTAINERS:
        yield path
        return
    folder = Path(tempfile.mkdtemp(prefix="compose-diff-"))
    try:
        out = folder / (path.name.removesuffix(CONTAINERS[kind]) or "image")
        if kind is ImageKind.SIMG:
            expand_simg(path, out)
        elif kind is ImageKind.ZSTD:
            _unzstd(path, out)
        else:
            _decompress(path, out, kind)
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




def _decompress(path: Path, out: Path, kind: ImageKind) -> None:
    """gzip, xz or bzip2, streamed through Python's own modules (CHUNK bytes at a time)."""
    try:
        with _OPENERS[kind](path) as src, out.open("wb") as dst:
            while chunk := src.read(CHUNK):
                dst.write(chunk)
    except (OSError, EOFError, lzma.LZMAError, zlib.error) as exc:
        raise ComposerError(f"{path.name} is not a {kind.value} file that expands to its end "
                            f"({type(exc).__name__}: {exc})",
                            hint=f"check it with `{kind.value} -t {path.name}`") from None
