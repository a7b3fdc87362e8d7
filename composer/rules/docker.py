"""The Docker image store: copied whole (whiteouts, xattrs, hard links, setuid, numeric owners),
less the parts that belong to one running daemon."""

from __future__ import annotations

from composer.layout.model import Docker, SourceRef
from composer.rules.assembly import Assembly
from composer.rules.docker_images import DockerImagesRule
from composer.tree import Entry, Kind
from composer.types import Claim

EPHEMERAL = ("containers", "tmp", "runtimes", "swarm", "network", "buildkit", "engine-id")


class DockerRule:
    def __init__(self, spec: Docker, asm: Assembly) -> None:
        self.spec = spec
        self.asm = asm

    def apply(self) -> None:
        if self.spec.src is not None:
            self._copy_store(self.spec.src)
        if self.spec.images:
            DockerImagesRule(self.spec, self.asm).apply()

    def check(self) -> None:
        """After every rule has placed its files: daemon.json agrees with the store."""
        if self.spec.images:
            DockerImagesRule(self.spec, self.asm).check_daemon_json()

    def _copy_store(self, src: SourceRef) -> None:
        top = self.asm.lookup(src, "docker.from")
        if top is None:
            return
        if top.kind is not Kind.DIR:
            self.asm.error(f"{src} is not a folder", src.loc,
                           path="docker.from")
            return
        unknown = [k for k in self.spec.keep if k not in EPHEMERAL]
        for name in unknown:
            self.asm.error(f"{name!r} is not one of the parts docker drops", self.spec.loc,
                           path="docker.keep", hint=f"one of: {', '.join(EPHEMERAL)}")
        claim = Claim("docker", self.spec.loc, from_source=True)
        self.asm.copy(src, self.spec.to, claim, keep=self._keep)

    def _keep(self, rel: str, entry: Entry) -> bool:
        if "/" in rel or rel not in EPHEMERAL or rel in self.spec.keep:
            return True
        why = "a per-daemon ID" if rel == "engine-id" else "state of one running daemon"
        self.asm.report.dropped(f"{self.spec.to}/{rel} ({why})")
        return False
