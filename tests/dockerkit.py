"""Helpers for the Docker preload tests: test images (tools/make_docker_images.py), builds of a
docker partition, debugfs look-ups, and a private dockerd on a loop-mounted image."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.conftest import TOOLS, compose, in_ci, need, need_root
from tests.flashkit import e2fsck_clean  # noqa: F401  (re-exported for the tests)

sys.path.insert(0, str(TOOLS))
import make_docker_images as images  # noqa: E402, F401  (re-exported for the tests)

sys.path.remove(str(TOOLS))

EPOCH = 1718878001


def make_images(folder: Path, *args: str) -> Path:
    subprocess.run([sys.executable, str(TOOLS / "make_docker_images.py"), str(folder), *args],
                   check=True)
    return folder


def layout(folder: Path, items: list[dict[str, object]], docker_extra: str = "",
           sources: str = "", size: str = "64MiB") -> Path:
    """A layout with one ext4 partition at /data holding the store at /data/docker."""
    text = (f"version: 1\nname: docker-test\nepoch: {EPOCH}\n{sources}"
            f"partitions:\n  - {{name: data, fs: ext4, mount: /data, size: {size}}}\n"
            f"docker:\n  to: /data/docker\n{docker_extra}")
    if items:
        text += "  images:\n" + "".join(f"    - {json.dumps(item)}\n" for item in items)
    path = folder / "layout.yaml"
    path.write_text(text)
    return path


def build(layout_path: Path, out: Path) -> Path:
    proc = compose("build", str(layout_path), "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    return out / "data.img"


def debugfs(img: Path, *commands: str) -> list[str]:
    """Outputs of debugfs commands, one string each."""
    need("debugfs")
    with tempfile.NamedTemporaryFile("w", suffix=".cmds") as f:
        f.write("\n".join(commands) + "\n")
        f.flush()
        proc = subprocess.run(["debugfs", "-f", f.name, str(img)], capture_output=True,
                              text=True, errors="replace")
    assert proc.returncode == 0, proc.stderr
    parts = proc.stdout.split("debugfs: ")[1:]
    assert len(parts) == len(commands), proc.stdout
    return [p.partition("\n")[2] for p in parts]


def cat(img: Path, path: str) -> bytes:
    need("debugfs")
    proc = subprocess.run(["debugfs", "-R", f"cat {path}", str(img)], capture_output=True)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def sha256_file(path: Path) -> str:
    return "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()


# --- a private dockerd --------------------------------------------------------------------


def need_dockerd() -> None:
    need_root("loop mounts and dockerd")
    need("dockerd", "docker", "containerd", "runc", "mount", "losetup")


@contextmanager
def loop_mounted(img: Path) -> Iterator[Path]:
    mnt = Path(tempfile.mkdtemp(prefix="dkm"))
    subprocess.run(["mount", "-o", "loop", str(img), str(mnt)], check=True, capture_output=True)
    try:
        yield mnt
    finally:
        subprocess.run(["umount", str(mnt)], check=False, capture_output=True)
        if os.path.ismount(mnt):
            subprocess.run(["umount", "-l", str(mnt)], check=False)
        mnt.rmdir()


class Dockerd:
    """dockerd on a data root, with its own socket, exec root and containerd (short paths:
    a unix socket path has at most 107 bytes)."""

    def __init__(self, data_root: Path) -> None:
        self.run_dir = Path(tempfile.mkdtemp(prefix="dkd"))
        self.sock = self.run_dir / "d.sock"
        self.log = self.run_dir / "log"
        args = ["dockerd", "--data-root", str(data_root), "--storage-driver", "overlay2",
                "--host", f"unix://{self.sock}", "--pidfile", str(self.run_dir / "pid"),
                "--exec-root", str(self.run_dir / "x"), "--bridge", "none",
                "--iptables=false", "--ip6tables=false", "--ip-masq=false"]
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
        for _ in range(300):
            if self.proc.poll() is not None:
                break
            if self.sock.exists() and self.docker("version", check=False).returncode == 0:
                return
            time.sleep(0.1)
        log_text = self.log.read_text(errors="replace")[-3000:]
        self.stop()
        if in_ci():
            pytest.fail(f"dockerd did not start:\n{log_text}")
        pytest.skip(f"dockerd did not start here:\n{log_text}")

    def docker(self, *args: str, check: bool = True, binary: bool = False,
               ) -> subprocess.CompletedProcess:  # type: ignore[type-arg]
        proc = subprocess.run(["docker", "-H", f"unix://{self.sock}", *args],
                              capture_output=True, text=not binary)
        if check:
            assert proc.returncode == 0, (args, proc.stderr, self.log.read_text()[-2000:])
        return proc

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.run_dir, ignore_errors=True)


@contextmanager
def dockerd(data_root: Path) -> Iterator[Dockerd]:
    daemon = Dockerd(data_root)
    try:
        yield daemon
    finally:
        daemon.stop()
