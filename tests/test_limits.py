"""Hostile and out-of-range input: one located error, exit 1, fast, nothing written.

Output names (collisions, reserved names), the time range, the former exit-3 cases and the
resource bounds, each with its exact message; then random bytes and random YAML thrown at the
loader (never anything but a ComposerError, never a file outside the output folder).
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from composer.errors import ComposerError
from composer.layout.load import load_layout
from tests.conftest import compose
from tests.readback import published

HEAD = "version: 1\nname: t\nepoch: 1700000000\n"
EXT4 = "  - {name: root, fs: ext4, size: 8MiB, mount: /}\n"
HINT_SIZE = "  hint: sizes look like 64MiB, 512KiB, 1GiB\n"
HINT_EPOCH = "  hint: give seconds since 1970, such as 1718878001\n"

CASES: dict[str, tuple[str, str]] = {
    # 5. output names, decided and checked when the layout is loaded
    "reserved-disk": (
        HEAD + "partitions:\n  - {name: disk, fs: ext4, size: 8MiB, mount: /}\n"
        "disk: {table: gpt}\n",
        "error: l.yaml:5:5: partitions[0].name: partition name 'disk' is reserved\n"
        "  hint: composer names its own outputs disk, manifest, report, SHA256SUMS.*; choose "
        "another name\n"),
    "reserved-manifest": (
        HEAD + "partitions:\n  - {name: manifest, fs: tar, mount: /}\n",
        "error: l.yaml:5:5: partitions[0].name: partition name 'manifest' is reserved\n"
        "  hint: composer names its own outputs disk, manifest, report, SHA256SUMS.*; choose "
        "another name\n"),
    "reserved-sums": (
        HEAD + "partitions:\n  - {name: sha256sums, fs: tar, mount: /}\n",
        "error: l.yaml:5:5: partitions[0].name: partition name 'sha256sums' is reserved\n"
        "  hint: composer names its own outputs disk, manifest, report, SHA256SUMS.*; choose "
        "another name\n"),
    "case-collision": (
        HEAD + "partitions:\n" + EXT4 + "  - {name: Root, fs: ext4, size: 8MiB, mount: /b}\n",
        "error: l.yaml:6:5: partitions[1].name: partition 'Root' would write Root.img, which "
        "partition 'root' already writes as root.img\n"
        "  hint: output names must differ in more than letter case; rename the partition\n"),
    # 8. time range and NUL
    "epoch-after-2446": (
        HEAD.replace("1700000000", "15032385536") + "partitions:\n" + EXT4,
        "error: l.yaml:3:8: epoch: epoch 15032385536 is after 15032385535 "
        "(2446-05-10 22:38:55 UTC), the last second ext4 can store\n" + HINT_EPOCH),
    "nul-in-label": (
        HEAD + "partitions:\n  - {name: root, fs: ext4, size: 8MiB, mount: /, "
        "label: \"a\\0b\"}\n",
        "error: l.yaml:5:57: partitions[0].label: 'a\\x00b' contains a NUL character\n"
        "  hint: names, paths, labels and link targets cannot hold NUL (\\0)\n"),
    "nul-in-symlink": (
        HEAD + "partitions:\n" + EXT4 + "files:\n  - {to: /a, symlink: \"/b\\0c\"}\n",
        "error: l.yaml:7:23: files[0].symlink: '/b\\x00c' contains a NUL character\n"
        "  hint: names, paths, labels and link targets cannot hold NUL (\\0)\n"),
    "nul-in-to": (
        HEAD + "partitions:\n" + EXT4 + "files:\n  - {to: \"/a\\0\", content: x}\n",
        "error: l.yaml:7:10: files[0].to: '/a\\x00' contains a NUL character\n"
        "  hint: names, paths, labels and link targets cannot hold NUL (\\0)\n"),
    # 9. what used to end in a traceback (exit 3)
    "vfat-256-units": (
        HEAD + "partitions:\n  - {name: boot, fs: vfat, size: 4MiB, mount: /}\n"
        f"files:\n  - {{to: /{'a' * 256}, content: x}}\n",
        f"error: l.yaml:5:5: boot: /{'a' * 256}: the name is 256 UTF-16 units long; FAT allows "
        "255\n"),
    "merge-key": (
        HEAD + "base: &b {fs: ext4, size: 8MiB}\npartitions:\n  - <<: *b\n"
        "    name: root\n    mount: /\n",
        "error: l.yaml:6:5: YAML merge keys (<<) are not supported\n"
        "  hint: write the keys out; a layout should show every value it sets\n"),
    "deep-nesting": (
        HEAD + "partitions: " + "[" * 5000 + "]" * 5000 + "\n",
        "error: l.yaml:4:76: the layout nests deeper than 64 levels, the limit\n"
        "  hint: a layout nests a few levels deep\n"),
    "lone-surrogate": (
        HEAD + "partitions:\n" + EXT4 + "files:\n  - {to: \"/\\ud800\", content: x}\n",
        "error: l.yaml:7:10: files[0].to: '/\\ud800' is not valid Unicode (a lone surrogate "
        "'\\ud800')\n  hint: a \\uD800-\\uDFFF escape must be half of a pair; write the "
        "character itself\n"),
    "alias-bomb": (  # 10⁹ values once expanded
        "".join(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10 if i else ["x"] * 10) + "]\n"
                for i in range(10)),
        "error: l.yaml:5:5: the layout has more than 20000 values once its aliases are "
        "expanded, the limit\n  hint: a layout is a short file; generate fewer values (or no "
        "YAML alias chains)\n"),
    "alias-self": (
        HEAD + "partitions: &p [*p]\n",
        "error: l.yaml:4:13: the layout nests deeper than 64 levels, the limit\n"
        "  hint: an alias refers to a value that contains it\n"),
    "unknown-tag": (
        HEAD + "partitions:\n  - {name: !foo root, fs: ext4, size: 8MiB, mount: /}\n",
        "error: l.yaml:5:12: cannot read this value: could not determine a constructor for the "
        "tag '!foo'\n  hint: remove the ! tag\n"),
    # 10. resource bounds
    "size-huge": (
        HEAD + "partitions:\n  - {name: root, fs: ext4, size: 99999999999999999999GiB, "
        "mount: /}\n",
        "error: l.yaml:5:34: partitions[0].size: 99999999999999999999GiB is over 16 TiB, the "
        "largest size composer accepts\n" + HINT_SIZE),
    "size-1024TiB": (
        HEAD + "partitions:\n  - {name: root, fs: ext4, size: 1024TiB, mount: /}\n",
        "error: l.yaml:5:34: partitions[0].size: 1024TiB is over 16 TiB, the largest size "
        "composer accepts\n" + HINT_SIZE),
    "size-over-image-bound": (
        HEAD + "partitions:\n  - {name: root, fs: ext4, size: 65GiB, mount: /}\n",
        "error: l.yaml:5:34: partitions[0].size: 65GiB is over 64 GiB, the image size bound "
        "(hashing it for SHA256SUMS reads every byte: about 1 s per GiB)\n"
        "  hint: if you mean it, set 'max_image_size: 65GiB' at the top of the layout\n"),
    "align-1TiB": (
        HEAD + "partitions:\n" + EXT4 + "disk: {align: 1TiB}\n",
        "error: l.yaml:6:15: disk.align: alignment 1TiB is over 1 GiB, the limit\n"
        "  hint: 1MiB suits every flash medium\n"),
    "offset-makes-disk-too-big": (
        HEAD + "partitions:\n  - {name: root, fs: ext4, size: 8MiB, mount: /, "
        "offset: 100GiB}\ndisk: {table: gpt}\n",
        "error: l.yaml:6:7: disk: the disk would be 100.0 GiB (107383619584 bytes), over 64 GiB,"
        " the image size bound (hashing it for SHA256SUMS reads every byte: about 1 s per GiB)\n"
        "  hint: check offsets and align; if you mean it, raise 'max_image_size' at the top of "
        "the layout\n"),
    "unicode-digits-size": (
        HEAD + "partitions:\n  - {name: root, fs: ext4, size: \"１２MiB\", mount: /}\n",
        "error: l.yaml:5:34: partitions[0].size: '１２MiB' is not a size (use a number and "
        "a unit: K, M, G, T or KiB, MiB, GiB, TiB, all binary)\n"
        "  hint: sizes look like 64MiB, 512KiB, 1GiB or 'auto'\n"),
    "unicode-digits-owner": (
        HEAD + "partitions:\n" + EXT4 + "files:\n  - {to: /a, content: x, owner: \"١:0\"}\n",
        "error: l.yaml:7:33: files[0].owner: owner must be a quoted \"UID:GID\" string, got "
        "'١:0'\n  hint: numeric ids, such as \"998:998\" (the names on the device may "
        "differ)\n"),
    "owner-over-32-bits": (
        HEAD + "partitions:\n" + EXT4 + "files:\n  - {to: /a, content: x, "
        "owner: \"4294967296:0\"}\n",
        "error: l.yaml:7:33: files[0].owner: owner 4294967296:0 is over 4294967295, the "
        "largest id\n  hint: user and group ids are 32-bit numbers\n"),
    "many-aliases": (  # 2,000 aliases in 8 KiB: stops at the 1,001st, before building anything
        HEAD + "x: &a 1\nl: [" + ", ".join(["*a"] * 2000) + "]\n",
        "error: l.yaml:5:4005: the layout has more than 1000 YAML aliases, the limit\n"
        "  hint: a layout is a short file; generate fewer values (or no YAML alias chains)\n"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_hostile_layout_gets_one_located_error(case: str, tmp_path: Path) -> None:
    text, expected = CASES[case]
    (tmp_path / "l.yaml").write_text(text, encoding="utf-8")
    with pytest.raises(ComposerError):
        load_layout_and_plan(tmp_path / "l.yaml")
    result = compose("-q", "build", "l.yaml", "-o", "out", cwd=tmp_path)
    assert result.returncode == 1, result.stderr
    assert result.stderr == expected
    assert sorted(p.name for p in tmp_path.iterdir()) == ["l.yaml"]


@pytest.mark.parametrize("case", ["deep-nesting", "many-aliases"])
def test_bounds_are_checked_on_the_event_stream_before_any_tree_is_built(
        case: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Not a timing: the bound must stop the load before PyYAML composes a node tree (which
    is what costs time and memory on a hostile file), so composing is made to fail loudly."""
    from composer.layout import yamlload

    def must_not_compose(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("yaml.compose ran before the bounds check refused the file")

    monkeypatch.setattr(yamlload.yaml, "compose", must_not_compose)
    (tmp_path / "l.yaml").write_text(CASES[case][0], encoding="utf-8")
    with pytest.raises(ComposerError, match="the limit"):
        load_layout_and_plan(tmp_path / "l.yaml")


class _NestingLimitedParser(yaml.SafeLoader):
    """Stands in for a libyaml that has its own nesting limit (PyYAML 6.0.4's refuses 1000
    levels with a scanner error before it yields one event), whatever libyaml this machine has."""

    def check_event(self, *choices: object) -> bool:
        raise yaml.scanner.ScannerError("while increasing flow level", None,
                                        "exceeded maximum nesting depth", None)


def test_a_libyaml_with_its_own_nesting_limit_still_gives_our_located_error(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from composer.layout import yamlload

    monkeypatch.setattr(yamlload.yaml, "__with_libyaml__", True)
    monkeypatch.setattr(yamlload.yaml, "CSafeLoader", _NestingLimitedParser, raising=False)
    (tmp_path / "l.yaml").write_text(CASES["deep-nesting"][0], encoding="utf-8")
    with pytest.raises(ComposerError) as caught:
        load_layout_and_plan(tmp_path / "l.yaml")
    error = caught.value
    assert "nests deeper than 64 levels" in error.message
    assert error.loc is not None and (error.loc.line, error.loc.col) == (4, 76)


def load_layout_and_plan(path: Path) -> None:
    from composer.build import plan

    plan(path)


def test_ten_to_the_six_aliases_are_refused_by_size_at_once(tmp_path: Path) -> None:
    (tmp_path / "l.yaml").write_text(HEAD + "x: &a 1\nl: [" + ",".join(["*a"] * 10**6) + "]\n")
    with pytest.raises(ComposerError) as caught:  # refused by its size, before any parse
        load_layout(tmp_path / "l.yaml")
    assert caught.value.render() == (
        f"error: {tmp_path / 'l.yaml'}: the layout file is over 1048576 bytes, the limit\n"
        "  hint: a layout is a short file")


def test_dev_zero_is_not_a_layout() -> None:
    """It used to read /dev/zero until memory ran out (13 GB): under a 1 GiB address-space
    limit, that would now end in a MemoryError instead of the message."""
    def limit_memory() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))

    result = subprocess.run([sys.executable, "-m", "composer", "validate", "/dev/zero"],
                            capture_output=True, text=True, timeout=120,
                            preexec_fn=limit_memory)
    assert result.returncode == 1
    assert result.stderr == ("error: /dev/zero: the layout file is not a regular file\n"
                             "  hint: give the path of a .yaml file\n")


@pytest.mark.parametrize(("value", "message"), [
    ("²", "error: SOURCE_DATE_EPOCH='²' is not a number of seconds\n"
          "  hint: give seconds since 1970 in ASCII digits, such as 1718878001\n"),
    ("٣", "error: SOURCE_DATE_EPOCH='٣' is not a number of seconds\n"
          "  hint: give seconds since 1970 in ASCII digits, such as 1718878001\n"),
    ("15032385536", "error: SOURCE_DATE_EPOCH=15032385536 is after 15032385535 "
                    "(2446-05-10 22:38:55 UTC), the last second ext4 can store\n" + HINT_EPOCH),
])
def test_bad_source_date_epoch(value: str, message: str, tmp_path: Path) -> None:
    (tmp_path / "l.yaml").write_text(HEAD + "partitions:\n" + EXT4)
    result = compose("validate", "l.yaml", cwd=tmp_path, env={"SOURCE_DATE_EPOCH": value})
    assert (result.returncode, result.stderr) == (1, message)


def test_far_future_epoch_is_one_error_not_one_per_entry(tmp_path: Path) -> None:
    (tmp_path / "l.yaml").write_text(
        HEAD + "partitions:\n" + EXT4 + "files:\n"
        + "".join(f"  - {{to: /f{i}, content: x}}\n" for i in range(12)))
    result = compose("validate", "l.yaml", "--source-date-epoch", "20000000000", cwd=tmp_path)
    assert (result.returncode, result.stderr) == (
        1, "error: --source-date-epoch 20000000000 is after 15032385535 "
        "(2446-05-10 22:38:55 UTC), the last second ext4 can store\n" + HINT_EPOCH)


def test_last_ext4_second_is_stored_as_2446(tmp_path: Path) -> None:
    """3·2³²+2³¹−1 s: e2fsck accepts it and debugfs reads the year 2446 back (no wrap)."""
    (tmp_path / "l.yaml").write_text(HEAD + "partitions:\n" + EXT4 +
                                     "files:\n  - {to: /f, content: x}\n")
    result = compose("build", "l.yaml", "-o", "out", "--source-date-epoch", "15032385535",
                     cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    image = tmp_path / "out" / "root.img"
    fsck = subprocess.run(["e2fsck", "-fn", str(image)], capture_output=True, text=True)
    assert fsck.returncode == 0 and "Pass 5" in fsck.stdout, fsck.stdout + fsck.stderr
    stat = subprocess.run(["debugfs", "-R", "stat /f", str(image)], capture_output=True,
                          text=True).stdout
    mtime = next(line for line in stat.splitlines() if line.startswith(" mtime:"))
    assert "May 10 22:38:55 2446" in mtime, stat


def test_rootfs_a_and_b_get_their_own_bmaps(tmp_path: Path) -> None:
    (tmp_path / "l.yaml").write_text(
        HEAD + "partitions:\n  - {name: rootfs.a, fs: ext4, size: 8MiB, mount: /}\n"
        "  - {name: rootfs.b, fs: ext4, size: 12MiB, mount: /b}\n"
        "files:\n  - {to: /b/f, content: x}\n")
    result = compose("build", "l.yaml", "-o", "out", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    out = tmp_path / "out"
    assert {"rootfs.a.bmap", "rootfs.b.bmap"} <= {p.name for p in published(out)}
    for name, size in (("rootfs.a", 8 << 20), ("rootfs.b", 12 << 20)):
        copy = subprocess.run(["bmaptool", "copy", "--bmap", str(out / f"{name}.bmap"),
                               str(out / f"{name}.img"), str(tmp_path / f"{name}.copy")],
                              capture_output=True, text=True)
        assert copy.returncode == 0, copy.stderr
        assert (tmp_path / f"{name}.copy").stat().st_size == size


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a small tmpfs needs root")
def test_disk_full_while_writing_a_tar_partition(tmp_path: Path) -> None:
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "big.bin").write_bytes(os.urandom(3 << 20))
    (tmp_path / "l.yaml").write_text(
        HEAD + "sources:\n  src: src/\npartitions:\n  - {name: app, fs: tar, mount: /}\n"
        "files:\n  - {to: /data, from: \"src:/\"}\n")
    small = tmp_path / "small"
    small.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(small)], check=True)
    try:
        (small / "out").mkdir()
        (small / "out" / "keep.txt").write_text("kept\n")
        result = compose("-q", "build", "l.yaml", "-o", str(small / "out"), cwd=tmp_path)
        assert result.returncode == 1, result.stderr
        assert result.stderr == (
            "error: l.yaml:7:5: app: writing app.tar failed: No space left on device\n"
            "  hint: check free space in the output folder's file system; the output folder "
            "was left as it was\n")
        assert sorted(p.name for p in (small / "out").iterdir()) == ["keep.txt"]
    finally:
        subprocess.run(["umount", str(small)], check=True)


# --- random input --------------------------------------------------------------------------

KEYS = ["version", "name", "epoch", "sources", "partitions", "files", "disk", "outputs", "fs",
        "size", "mount", "label", "to", "from", "content", "symlink", "owner", "mode", "align",
        "table", "offset", "raw", "max_image_size", "<<", "uuid", "type"]
SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(-2**70, 2**70), st.floats(allow_nan=True),
    st.text(max_size=30), st.sampled_from(["auto", "ext4", "vfat", "tar", "/", "8MiB", "1TiB",
                                           "99999999999999999999GiB", "src:/", "0644", "gpt",
                                           "mbr", "\0", "\ud800"]))
VALUES = st.recursive(SCALARS, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.sampled_from(KEYS), inner, max_size=5)),
    max_leaves=25)


def _layout_text(draw_value: object) -> str:
    return yaml.safe_dump(draw_value, allow_unicode=False)


@settings(max_examples=150, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(st.one_of(
    st.binary(max_size=300).map(lambda b: b),
    st.dictionaries(st.sampled_from(KEYS), VALUES, max_size=8).map(
        lambda d: _layout_text({"version": 1, "name": "t", **d}).encode("utf-8",
                                                                         "surrogatepass")),
    st.tuples(st.sampled_from(list(CASES)), st.integers(0, 400), st.binary(max_size=8)).map(
        lambda t: _mutate(CASES[t[0]][0].encode(), t[1], t[2]))))
def test_random_input_gives_a_layout_or_a_composer_error(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "l.yaml"
    path.write_bytes(data)
    try:
        load_layout(path)
    except ComposerError as exc:
        assert exc.render()  # renders without raising (no lone surrogates on the way out)
        exc.render().encode("utf-8")


def _mutate(text: bytes, at: int, insert: bytes) -> bytes:
    at = min(at, len(text))
    return text[:at] + insert + text[at + len(insert):]


@settings(max_examples=12, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(st.dictionaries(st.sampled_from(KEYS), VALUES, max_size=8))
def test_random_layout_through_the_cli_never_exits_3_or_writes_elsewhere(
        tmp_path_factory: pytest.TempPathFactory, extra: dict[str, object]) -> None:
    folder = tmp_path_factory.mktemp("rand")
    layout = {"version": 1, "name": "t", "epoch": 1700000000,
              "partitions": [{"name": "root", "fs": "tar", "mount": "/"}], **extra}
    (folder / "l.yaml").write_text(yaml.safe_dump(layout, allow_unicode=False))
    result = compose("-q", "build", "l.yaml", "-o", "out", cwd=folder)
    assert result.returncode in (0, 1), result.stderr
    assert "Traceback" not in result.stderr
    assert {p.name for p in folder.iterdir()} <= {"l.yaml", "out"}


def test_a_build_with_no_time_anywhere_is_one_located_error(tmp_path: Path) -> None:
    """No `epoch:` and every source time 0 (as a bare docker.images build can be): the error
    names the layout file, whose `epoch:` is the fix, and nothing is written."""
    src = tmp_path / "src"
    src.mkdir()
    (src / "f").write_text("x")
    for p in (src / "f", src):
        os.utime(p, (0, 0))
    (tmp_path / "l.yaml").write_text(
        "version: 1\nname: t\nsources:\n  s: src/\npartitions:\n"
        "  - {name: root, fs: tar, mount: /}\nfiles:\n  - {from: 's:/', to: /}\n",
        encoding="utf-8")
    result = compose("-q", "build", "l.yaml", "-o", "out", cwd=tmp_path)
    assert result.returncode == 1, result.stderr
    assert result.stderr.startswith("error: l.yaml: the build has no epoch"), result.stderr
    assert "hint: set 'epoch:' in the layout or SOURCE_DATE_EPOCH" in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["l.yaml", "src"]
