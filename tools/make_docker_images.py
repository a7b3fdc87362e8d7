#!/usr/bin/env python3
"""Small container images for tests, made without a daemon or a registry, byte for byte the
same on every run.

    make_docker_images.py OUTDIR [--member-order reversed]

writes into OUTDIR:
  app.docker.tar   `docker save` format (manifest.json, <config>.json, <id>/layer.tar): image APP
  images.oci.tar   an OCI image layout in a tar (`oci-archive`, as skopeo and crane write it):
                   APP (a gzip base layer, a zstd top layer) and OTHER (same base, gzip top)
  other.oci/       an OCI image layout folder holding OTHER

APP = BASE + TOP_APP, OTHER = BASE + TOP_OTHER; the two share BASE. Their files:
  BASE      /bin/cat (a 125-byte static x86-64 `cat`, so `docker run` has something to run),
            /bin/ping-ish setuid root (04755), /bin/capped with a security.capability xattr
            (cap_net_raw+ep), /etc/greeting with a hard link /etc/greeting.link,
            /etc/removed, /opt/cfg/{a,b}
  TOP_APP   deletes /etc/removed (a .wh. whiteout), makes /opt/cfg opaque (.wh..wh..opq) with
            only /opt/cfg/c in it, adds /app/run
  TOP_OTHER replaces /etc/greeting

The zstd layer is made by the `zstd` command (Python 3.11 has no zstd module).

`--member-order reversed` writes the same images with the archives' members in the opposite
order (and the OCI index's manifests reversed): a build from them must give the same bytes.
Tests import this module for the pieces (layer(), config(), docker_save(), oci_layout()).
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import json
import shutil
import struct
import subprocess
import sys
import tarfile
from dataclasses import dataclass, field
from pathlib import Path

MTIME = 1_700_000_000
PLATFORM = {"os": "linux", "architecture": "amd64"}

# A static x86-64 Linux `cat FILE...` in 125 bytes, assembled from:
#   mov rbx,[rsp]; lea rbp,[rsp+16]; dec rbx; sub rsp,4096; xor r13d,r13d
#   next: test rbx,rbx; jz done; open([rbp], O_RDONLY); js fail; mov r12,rax
#   rd: read(r12, rsp, 4096); jle closef; write(1, rsp, rax); jmp rd
#   closef: close(r12); jmp adv;  fail: mov r13d,1;  adv: add rbp,8; dec rbx; jmp next
#   done: exit(r13d)            (exit status 1 when a file could not be opened)
CAT_CODE = bytes.fromhex(
    "488b1c24488d6c241048ffcb4881ec001000004531ed4885db7458488b7d0031f6b8020000000f054885c0"
    "78374989c44c89e74889e6ba0010000031c00f054885c07e144889c2bf010000004889e6b8010000000f05"
    "ebd84c89e7b8030000000f05eb0641bd010000004883c50848ffcbeba34489efb83c0000000f05")


def cat_binary() -> bytes:
    """CAT_CODE in a minimal ELF64 executable: one PT_LOAD segment at 0x400000."""
    base, headers = 0x400000, 64 + 56
    ident = b"\x7fELF" + bytes([2, 1, 1, 0]) + bytes(8)
    elf = ident + struct.pack("<HHIQQQIHHHHHH", 2, 0x3E, 1, base + headers, 64, 0, 0, 64, 56,
                              1, 0, 0, 0)
    total = headers + len(CAT_CODE)
    phdr = struct.pack("<IIQQQQQQ", 1, 5, 0, base, base, total, total, 0x1000)
    return elf + phdr + CAT_CODE


# cap_net_raw+ep as the kernel stores it (VFS_CAP_REVISION_2, permitted bit 13, effective)
CAPABILITY = struct.pack("<IIIII", 0x02000001, 1 << 13, 0, 0, 0)


@dataclass(frozen=True)
class Member:
    path: str  # without a leading slash; a folder without a trailing one
    kind: str = "file"  # file, dir, hardlink, symlink
    data: bytes = b""
    mode: int = 0o644
    target: str = ""
    xattrs: dict[str, bytes] = field(default_factory=dict)
    uid: int = 0
    gid: int = 0


BASE = (
    Member("bin", "dir", mode=0o755),
    Member("bin/cat", data=cat_binary(), mode=0o755),
    Member("bin/ping-ish", data=b"#!/bin/sh\necho setuid\n", mode=0o4755),
    Member("bin/capped", data=b"needs raw sockets\n", mode=0o755,
           xattrs={"security.capability": CAPABILITY}),
    Member("etc", "dir", mode=0o755),
    Member("etc/greeting", data=b"hello from base\n"),
    Member("etc/greeting.link", "hardlink", target="etc/greeting"),
    Member("etc/removed", data=b"deleted by the top layer\n"),
    Member("opt", "dir", mode=0o755),
    Member("opt/cfg", "dir", mode=0o755),
    Member("opt/cfg/a", data=b"a\n"),
    Member("opt/cfg/b", data=b"b\n", uid=1000, gid=1000),
)
TOP_APP = (
    Member("app", "dir", mode=0o755),
    Member("app/run", data=b"app one\n", mode=0o755),
    Member("etc", "dir", mode=0o755),
    Member("etc/.wh.removed"),
    Member("opt", "dir", mode=0o755),
    Member("opt/cfg", "dir", mode=0o750),
    Member("opt/cfg/.wh..wh..opq"),
    Member("opt/cfg/c", data=b"c\n"),
)
TOP_OTHER = (
    Member("etc", "dir", mode=0o755),
    Member("etc/greeting", data=b"hello from other\n"),
)


def layer(members: tuple[Member, ...]) -> bytes:
    """An uncompressed layer tar (pax format, as Docker writes them). Its order is part of the
    layer: another order is another layer, with another diffID."""
    out = io.BytesIO()
    order = list(members)
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for m in order:
            info = tarfile.TarInfo(m.path + ("/" if m.kind == "dir" else ""))
            info.mode, info.uid, info.gid, info.mtime = m.mode, m.uid, m.gid, MTIME
            info.type = {"file": tarfile.REGTYPE, "dir": tarfile.DIRTYPE,
                         "hardlink": tarfile.LNKTYPE, "symlink": tarfile.SYMTYPE}[m.kind]
            info.linkname = m.target
            if m.xattrs:
                info.pax_headers = {f"SCHILY.xattr.{k}": v.decode("latin-1")
                                    for k, v in m.xattrs.items()}
            info.size = len(m.data) if m.kind == "file" else 0
            tar.addfile(info, io.BytesIO(m.data) if m.kind == "file" else None)
    return out.getvalue()


def gzipped(data: bytes) -> bytes:
    return gzip.compress(data, compresslevel=6, mtime=0)


def zstded(data: bytes) -> bytes:
    return subprocess.run(["zstd", "-q", "-c", "-9", "--no-check"], input=data,
                          stdout=subprocess.PIPE, check=True).stdout


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def config(layers: list[bytes], name: str, platform: dict[str, str] | None = None) -> bytes:
    """An image config: its sha256 is the image ID."""
    body = {**(platform or PLATFORM),
            "config": {"Cmd": ["/bin/cat", "/etc/greeting"], "Env": [f"IMAGE={name}"]},
            "created": "2023-11-14T22:13:20Z",
            "history": [{"created": "2023-11-14T22:13:20Z", "created_by": f"layer {i}"}
                        for i in range(len(layers))],
            "rootfs": {"type": "layers", "diff_ids": [sha256(t) for t in layers]}}
    return json.dumps(body, sort_keys=True, separators=(",", ":")).encode()


@dataclass(frozen=True)
class Image:
    tag: str  # the ref name recorded in the archive
    layers: tuple[bytes, ...]  # uncompressed tars
    compress: tuple[str, ...]  # per layer: "", "gzip", "zstd"
    platform: dict[str, str] = field(default_factory=lambda: dict(PLATFORM))

    @property
    def config(self) -> bytes:
        return config(list(self.layers), self.tag, self.platform)

    @property
    def image_id(self) -> str:
        return sha256(self.config)

    def blobs(self) -> list[bytes]:
        return [gzipped(t) if c == "gzip" else zstded(t) if c == "zstd" else t
                for t, c in zip(self.layers, self.compress, strict=True)]


def app_image(compress: tuple[str, str] = ("gzip", "zstd")) -> Image:
    return Image("composer-test/app:1", (layer(BASE), layer(TOP_APP)), compress)


def other_image() -> Image:
    return Image("composer-test/other:1", (layer(BASE), layer(TOP_OTHER)), ("gzip", "gzip"))


def docker_save(images: list[Image]) -> dict[str, bytes]:
    """The members of a `docker save` archive (Docker up to 24): uncompressed layer.tar files."""
    files: dict[str, bytes] = {}
    manifest = []
    for image in images:
        paths = []
        for tar in image.layers:
            path = f"{hashlib.sha256(tar).hexdigest()}/layer.tar"
            files[path] = tar
            paths.append(path)
        config_name = f"{image.image_id.removeprefix('sha256:')}.json"
        files[config_name] = image.config
        manifest.append({"Config": config_name, "RepoTags": [image.tag], "Layers": paths})
    files["manifest.json"] = json.dumps(manifest, separators=(",", ":")).encode()
    return files


def descriptor(media_type: str, data: bytes, **extra: object) -> dict[str, object]:
    return {"mediaType": media_type, "digest": sha256(data), "size": len(data), **extra}


MANIFEST_TYPE = "application/vnd.oci.image.manifest.v1+json"
INDEX_TYPE = "application/vnd.oci.image.index.v1+json"
LAYER_TYPES = {"": "application/vnd.oci.image.layer.v1.tar",
               "gzip": "application/vnd.oci.image.layer.v1.tar+gzip",
               "zstd": "application/vnd.oci.image.layer.v1.tar+zstd"}


def image_manifest(image: Image) -> tuple[bytes, dict[str, bytes]]:
    blobs = {image.image_id: image.config}
    layers = []
    for blob, kind in zip(image.blobs(), image.compress, strict=True):
        blobs[sha256(blob)] = blob
        layers.append(descriptor(LAYER_TYPES[kind], blob))
    manifest = {"schemaVersion": 2, "mediaType": MANIFEST_TYPE,
                "config": descriptor("application/vnd.oci.image.config.v1+json", image.config),
                "layers": layers}
    data = json.dumps(manifest, separators=(",", ":")).encode()
    blobs[sha256(data)] = data
    return data, blobs


def oci_layout(images: list[Image], reverse: bool = False,
               platforms_index: bool = False) -> dict[str, bytes]:
    """The files of an OCI image layout. With `platforms_index`, index.json points to one
    nested index that lists every image as a platform variant (a multi-platform image)."""
    blobs: dict[str, bytes] = {}
    entries = []
    for image in images:
        data, image_blobs = image_manifest(image)
        blobs.update(image_blobs)
        annotations = {"org.opencontainers.image.ref.name": image.tag}
        entries.append(descriptor(MANIFEST_TYPE, data, platform=dict(image.platform),
                                  **({} if platforms_index else {"annotations": annotations})))
    if reverse:
        entries.reverse()
    if platforms_index:
        nested = json.dumps({"schemaVersion": 2, "mediaType": INDEX_TYPE, "manifests": entries},
                            separators=(",", ":")).encode()
        blobs[sha256(nested)] = nested
        entries = [descriptor(INDEX_TYPE, nested, annotations={
            "org.opencontainers.image.ref.name": images[0].tag})]
    index = {"schemaVersion": 2, "mediaType": INDEX_TYPE, "manifests": entries}
    files = {f"blobs/sha256/{d.removeprefix('sha256:')}": b for d, b in blobs.items()}
    files["oci-layout"] = b'{"imageLayoutVersion":"1.0.0"}'
    files["index.json"] = json.dumps(index, separators=(",", ":")).encode()
    return files


def write_tar(files: dict[str, bytes], out: Path, reverse: bool = False) -> Path:
    names = sorted(files, reverse=reverse)
    with tarfile.open(out, "w", format=tarfile.PAX_FORMAT) as tar:
        folders = sorted({str(Path(n).parent) for n in names} - {"."}, reverse=reverse)
        for folder in folders:
            info = tarfile.TarInfo(folder + "/")
            info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, MTIME
            tar.addfile(info)
        for name in names:
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(files[name]), 0o644, MTIME
            tar.addfile(info, io.BytesIO(files[name]))
    return out


def write_folder(files: dict[str, bytes], out: Path) -> Path:
    shutil.rmtree(out, ignore_errors=True)
    for name, data in sorted(files.items()):
        path = out / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return out


def write_all(out: Path, reverse: bool = False) -> None:
    out.mkdir(parents=True, exist_ok=True)
    write_tar(docker_save([app_image(compress=("", ""))]), out / "app.docker.tar", reverse)
    write_tar(oci_layout([app_image(), other_image()], reverse), out / "images.oci.tar", reverse)
    write_folder(oci_layout([other_image()], reverse), out / "other.oci")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--member-order", choices=("as-made", "reversed"), default="as-made")
    args = parser.parse_args()
    write_all(args.out, reverse=args.member_order == "reversed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
