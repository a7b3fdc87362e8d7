"""No hidden state: loading, routing and hashing leave nothing behind and change nothing they
were given (issue 10)."""

from __future__ import annotations

import gc
import hashlib
import io
from pathlib import Path

import yaml

from composer.content import ContentStore, DataSource
from composer.errors import Loc
from composer.layout.model import Partition
from composer.layout.yamlload import load_yaml
from composer.outputs.manifest import HashingStore
from composer.route import route
from composer.tree import Content, DeviceTree, Entry, Kind
from composer.types import Claim

LAYOUT = "version: 1\nname: x\npartitions:\n  - {name: a, fs: ext4, size: 8MiB, mount: /}\n"


def _yaml_nodes_alive() -> int:
    gc.collect()
    return sum(isinstance(o, yaml.Node) for o in gc.get_objects())


def test_repeated_yaml_loads_keep_no_nodes() -> None:
    load_yaml(LAYOUT, "warm-up.yaml")
    before = _yaml_nodes_alive()
    for i in range(3):
        assert load_yaml(LAYOUT, f"l{i}.yaml").value["name"].value == "x"
    # a module-level constructor kept every scalar node of every load (13 more each here)
    assert _yaml_nodes_alive() == before


def _partition(name: str, mount: str, index: int) -> Partition:
    return Partition(name, "ext4", None, mount, None, None, {}, None, Loc("l.yaml"), index)


def test_route_leaves_the_tree_it_was_given_unchanged() -> None:
    entries = [Entry("/", Kind.DIR, 0o755, 0, 0, 0), Entry("/etc", Kind.DIR, 0o755, 0, 0, 0),
               Entry("/etc/hostname", Kind.FILE, 0o644, 0, 0, 0,
                     content=Content.of_bytes(b"x\n"))]
    tree = DeviceTree(entries)
    before = tree.entries()
    parts = [_partition("root", "/", 0), _partition("data", "/data", 1)]
    claims = {"/etc/hostname": Claim("files[0]", Loc("l.yaml"), False)}
    routing = route(tree, parts, 7, claims)
    assert routing.errors == ()
    assert tree.entries() == before and "/data" not in tree  # the input is as it was
    assert routing.tree.get("/data") == Entry("/data", Kind.DIR, 0o755, 0, 0, 7)
    assert [e.path for e in routing.partitions["root"]] == ["/", "/data", "/etc", "/etc/hostname"]
    assert [e.path for e in routing.partitions["data"]] == ["/"]
    again = route(tree, parts, 7, claims)  # and so routing twice gives the same answer
    assert again.partitions == routing.partitions


class _Members(DataSource):
    sequential = False

    def __init__(self, members: dict[str, bytes]) -> None:
        self.members = members

    def iter_data(self, wanted):  # type: ignore[no-untyped-def]
        for content in wanted:
            yield content, io.BytesIO(self.members[content.member])


def test_hashing_store_is_a_whole_content_store(tmp_path: Path) -> None:
    data = {"f": b"hello\n" * 1000}
    store = HashingStore(ContentStore({"s": _Members(data)}, tmp_path))
    content = Content(len(data["f"]), "s", "f", 0)
    assert store.sources.keys() == {"s"} and store.spill_dir == tmp_path
    assert store.spilling_into(tmp_path / "x").sources.keys() == {"s"}  # its __init__ ran
    [(got, stream)] = list(store.stream([content]))
    assert stream.read() == data["f"]
    assert store.digest(got) == hashlib.sha256(data["f"]).hexdigest()


def test_an_ext4_writer_used_for_another_request_writes_what_a_fresh_one_does(
        tmp_path: Path) -> None:
    """The ext4 writer keeps its prepared entries and plans for the request it serves; a
    different request (equal entries in another tuple, another epoch) must start afresh."""
    import uuid

    from composer.fs.base import WriteRequest
    from composer.fs.ext4 import Ext4Writer

    def request(epoch: int) -> WriteRequest:
        entries = (Entry(path="/", kind=Kind.DIR, mode=0o755, uid=0, gid=0, mtime_ns=0),
                   Entry(path="/d", kind=Kind.DIR, mode=0o700, uid=1, gid=2,
                         mtime_ns=epoch * 10**9))
        return WriteRequest("p", entries, None, None, uuid.UUID(int=7), epoch)

    def image(writer: Ext4Writer, req: WriteRequest, name: str) -> bytes:
        store = ContentStore({})
        writer.check(req)
        sized = WriteRequest(req.name, req.entries, writer.resolve_size(req), None, req.uuid,
                             req.epoch)
        writer.write(sized, tmp_path / name, store)
        return hashlib.sha256((tmp_path / name).read_bytes()).digest()

    used = Ext4Writer()
    image(used, request(1_700_000_000), "first.img")
    used.check(request(1_800_000_000))  # checked, then a third request is written
    assert image(used, request(1_600_000_000), "again.img") == \
        image(Ext4Writer(), request(1_600_000_000), "fresh.img")
