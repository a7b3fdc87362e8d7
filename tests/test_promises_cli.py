"""README promises that had no test, end to end through the `compose` command: exit 3 and
--debug, plan --json's disk section (compared with sfdisk on the built disk), each Greengrass
check as the error a user sees, unresolved ExecStart=, docker.keep/docker.to, owner and mode on
a whole copy, GPT short type names (the GUIDs of the UEFI spec and the Discoverable Partitions
Specification written out here), and tools/capture-golden.sh's tar options.

Snapshot variants are made by GNU tar extracting the golden snapshot into a folder, then editing
it the way a broken golden device would be."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO, TOOLS, compose, need, need_root
from tests.judges import gnu_extract, gnu_tar_list, sfdisk_json

GG = "greengrass/v2"
LAYOUT = """version: 1
name: promises
epoch: 1718878001
sources:
  golden: snap/
partitions:
  - {name: rootfs, fs: tar, mount: /}
greengrass:
  from: golden:/greengrass/v2
systemd:
  from: golden:/etc/systemd/system
  units: [greengrass.service]
"""


@pytest.fixture()
def snapshot(golden: Path) -> Path:
    return golden


def _project(tmp_path: Path, golden: Path, layout: str = LAYOUT) -> Path:
    """The golden snapshot as a folder extracted by GNU tar (without the Docker store, whose
    whiteouts are device nodes that only root can make), or as the archive itself when the
    layout needs the store."""
    need("tar")
    if "docker:" in layout:
        shutil.copy(golden, tmp_path / "golden.tar.gz")
        layout = layout.replace("golden: snap/", "golden: golden.tar.gz")
    else:
        (tmp_path / "snap").mkdir()
        done = subprocess.run(["tar", "--no-same-owner", "--exclude=./var/lib/docker", "-xzf",
                               str(golden), "-C", str(tmp_path / "snap")], capture_output=True,
                              text=True)
        assert done.returncode == 0 and done.stderr == "", done.stderr
    (tmp_path / "layout.yaml").write_text(layout)
    return tmp_path


def _recipe(name: str, version: str) -> str:
    """The recipe file name the nucleus looks for: base64url(sha256(name)) without padding."""
    import base64
    import hashlib

    digest = base64.urlsafe_b64encode(hashlib.sha256(name.encode()).digest()).decode()
    return f"{GG}/packages/recipes/{digest.rstrip('=')}@{version}.recipe.yaml"


LOGMANAGER = _recipe("aws.greengrass.LogManager", "2.3.7")
SECRETMANAGER = _recipe("aws.greengrass.SecretManager", "2.1.8")


def _break_alts_old(root: Path) -> None:
    (root / GG / "alts/old").symlink_to(f"/{GG}/alts/init")


def _break_recipe_name(root: Path) -> None:
    (root / LOGMANAGER).rename(root / GG / "packages/recipes/wrong@2.3.7.recipe.yaml")


def _break_plugin_digest(root: Path) -> None:
    with (root / SECRETMANAGER).open("a") as f:
        f.write("# edited\n")


def _break_tlog(root: Path) -> None:
    with (root / GG / "config/config.tlog").open("a") as f:
        f.write('{"TS":1,"TP":["a"],"W":"exploded","V":1}\n')


def _break_exec_start(root: Path) -> None:
    unit = root / "etc/systemd/system/greengrass.service"
    unit.write_text(unit.read_text().replace("ExecStart=/bin/sh /greengrass/v2/alts/current/"
                                             "distro/bin/loader",
                                             "ExecStart=/greengrass/v2/alts/current/distro/bin/"
                                             "nope"))


def _break_alts_current(root: Path) -> None:
    (root / GG / "alts/current").unlink()
    (root / GG / "alts/current").symlink_to(f"/{GG}/alts/missing")


CHECKS = {
    "alts-old": (_break_alts_old, [
        "error: layout.yaml:9:3: greengrass: /greengrass/v2/alts/old exists: the snapshot was "
        "taken in the middle of a nucleus update or rollback",
        "  hint: let the update finish (or roll back) on the golden device, then take the "
        "snapshot again"]),
    "recipe-name": (_break_recipe_name, [
        "error: layout.yaml:9:3: greengrass: /greengrass/v2/packages/recipes/wrong@2.3.7.recipe"
        ".yaml: the recipe of aws.greengrass.LogManager 2.3.7 must be named "
        f"{LOGMANAGER.rsplit('/', 1)[1]}",
        "  hint: the nucleus finds recipes by base64url(sha256(name))@version"]),
    "plugin-digest": (_break_plugin_digest, [
        f"error: layout.yaml:9:3: greengrass: /{SECRETMANAGER} no longer matches "
        "services.main.runtime.service-digest for aws.greengrass.secretmanager-v2.1.8",
        "  hint: the nucleus refuses a plugin whose recipe was modified; use the recipe file "
        "exactly as the golden device has it"]),
    "tlog-line": (_break_tlog, [
        "error: layout.yaml:9:3: greengrass: /greengrass/v2/config/config.tlog line 27: W "
        "'exploded' is not one of changed, initialized, childChanged, removed, childRemoved, "
        "timestampUpdated, interiorAdded",
        "  hint: the nucleus refuses a tlog with any bad line; fix or remove it in the "
        "snapshot"]),
    "exec-start": (_break_exec_start, [
        "error: layout.yaml:11:3: systemd.units: /etc/systemd/system/greengrass.service: "
        "ExecStart= runs /greengrass/v2/alts/current/distro/bin/nope, which does not resolve in "
        "the device tree",
        "  hint: the unit and greengrass.to must use the same root path"]),
    "alts-current": (_break_alts_current, [
        "error: layout.yaml:9:3: greengrass: /greengrass/v2/alts/current does not resolve to a "
        "folder inside the device tree",
        "  hint: alts/current must link to alts/init or alts/<deployment>; links are absolute, "
        "so greengrass.to must equal the golden device's path"]),
}


@pytest.mark.parametrize("case", sorted(CHECKS))
def test_greengrass_check_fails_end_to_end(tmp_path: Path, snapshot: Path, case: str) -> None:
    breaker, expected = CHECKS[case]
    folder = _project(tmp_path, snapshot)
    breaker(folder / "snap")
    result = compose("-q", "build", "layout.yaml", "-o", "out", cwd=folder)
    assert result.returncode == 1, result.stderr
    lines = result.stderr.splitlines()
    for want in expected:
        assert want in lines, (want, lines)
    assert "Traceback" not in result.stderr
    assert not (folder / "out").exists()


def test_unchanged_snapshot_folder_builds_with_the_metadata_warning(tmp_path: Path,
                                                                    snapshot: Path) -> None:
    folder = _project(tmp_path, snapshot)
    result = compose("build", "layout.yaml", "-o", "out", cwd=folder)
    assert result.returncode == 0, result.stderr
    nucleus = _recipe("aws.greengrass.Nucleus", "2.12.6").replace(".recipe.yaml",
                                                                  ".metadata.json")
    line = f"warning: /{nucleus} is missing (normal for a component installed locally)"
    assert line in (folder / "out/report.txt").read_text().splitlines()
    # plugin recipe files are never modified
    got = gnu_extract(folder / "out/rootfs.tar", tmp_path / "x")
    assert (got / SECRETMANAGER).read_bytes() == (folder / "snap" / SECRETMANAGER).read_bytes()
    assert (got / LOGMANAGER).read_bytes() == (folder / "snap" / LOGMANAGER).read_bytes()


# --- docker.keep / docker.to, owner and mode on a copy ---------------------------------------

def test_docker_to_and_keep_and_owner_on_a_whole_copy(tmp_path: Path, snapshot: Path) -> None:
    folder = _project(tmp_path, snapshot, LAYOUT + (
        "docker:\n  from: golden:/var/lib/docker\n  to: /srv/docker\n"
        "  keep: [containers, engine-id]\n"
        "files:\n  - {from: \"golden:/opt/app\", to: /opt/app, owner: \"1000:1001\", "
        "mode: \"0700\"}\n"))
    result = compose("-q", "build", "layout.yaml", "-o", "out", cwd=folder)
    assert result.returncode == 0, result.stderr
    listed = {m.name: m for m in gnu_tar_list(folder / "out/rootfs.tar")}
    docker = {n[len("./srv/docker/"):].rstrip("/") for n in listed
              if n.startswith("./srv/docker/") and n.count("/") == 3 + (n.endswith("/"))}
    assert docker == {"containers", "engine-id", "image", "overlay2", "volumes"}
    assert not [n for n in listed if n.startswith("./var/lib/docker")]
    assert "./srv/docker/containers/3c5e7f/config.v2.json" in listed
    app = {n: m for n, m in listed.items() if n.startswith("./opt/app")}
    assert len(app) >= 8
    assert all((m.uid, m.gid) == (1000, 1001) for m in app.values()), app
    assert app["./opt/app/"].mode == "drwx------"  # mode: the entry at `to` only
    assert app["./opt/app/run.sh"].mode == "-rwxr-xr-x"
    assert app["./opt/app/.env"].mode == "-rw-r-----"


def test_docker_default_drops_the_daemon_state(tmp_path: Path, snapshot: Path) -> None:
    folder = _project(tmp_path, snapshot, LAYOUT + "docker:\n  from: golden:/var/lib/docker\n")
    result = compose("-q", "build", "layout.yaml", "-o", "out", cwd=folder)
    assert result.returncode == 0, result.stderr
    names = {m.name for m in gnu_tar_list(folder / "out/rootfs.tar")}
    for gone in ("containers/", "tmp/", "runtimes/", "swarm/", "network/", "buildkit/",
                 "engine-id"):
        assert f"./var/lib/docker/{gone}" not in names, gone
    assert "./var/lib/docker/image/overlay2/repositories.json" in names


# --- exit codes and --debug ---------------------------------------------------------------------

def test_internal_error_is_exit_3_with_a_traceback(tmp_path: Path, demo: Path) -> None:
    """A bug (any exception that is not a ComposerError) as the real entry point shows it."""
    code = ("import sys, composer.build as b\n"
            "def boom(*a, **k):\n    raise RuntimeError('a planted bug')\n"
            "b.plan = boom\n"
            "from composer.cli import main\n"
            f"sys.argv = ['compose', 'validate', {str(demo)!r}]\nmain()\n")
    env = {**os.environ, "PYTHONPATH": os.environ.get("PYTHONPATH", str(REPO))}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            env=env)
    assert result.returncode == 3, result.stderr
    assert "Traceback (most recent call last)" in result.stderr
    assert "RuntimeError: a planted bug" in result.stderr
    assert result.stderr.rstrip().endswith(
        "compose: internal error; please report it with the traceback above")


@pytest.mark.parametrize("where", ["before", "after"])
def test_debug_shows_the_traceback_of_an_error(tmp_path: Path, where: str) -> None:
    (tmp_path / "layout.yaml").write_text("version: 1\nname: d\nsources:\n  s: missing/\n"
                                          "partitions:\n  - {name: r, fs: tar, mount: /}\n")
    plain = compose("validate", "layout.yaml", cwd=tmp_path)
    args = ["--debug", "validate", "layout.yaml"] if where == "before" else \
        ["validate", "layout.yaml", "--debug"]
    debug = compose(*args, cwd=tmp_path)
    assert plain.returncode == debug.returncode == 1
    assert "Traceback" not in plain.stderr
    assert "Traceback (most recent call last)" in debug.stderr
    assert debug.stderr.splitlines()[-len(plain.stderr.splitlines()):] == \
        plain.stderr.splitlines()


def test_usage_error_is_exit_2(tmp_path: Path) -> None:
    result = compose("build", "--no-such-option", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stdout == ""


# --- plan --json: the disk section, against sfdisk on the disk that build makes --------------

def test_plan_json_disk_section_is_what_build_makes(demo: Path, tmp_path: Path) -> None:
    plan = compose("plan", "--json", str(demo))
    assert plan.returncode == 0, plan.stderr
    disk = json.loads(plan.stdout)["disk"]
    assert compose("-q", "build", str(demo), "-o", str(tmp_path / "out")).returncode == 0
    built = json.loads((tmp_path / "out/manifest.json").read_text())["disk"]
    for key in ("table", "size", "guid", "signature", "partitions", "raw", "free"):
        assert disk[key] == built[key], key
    table = sfdisk_json(tmp_path / "out/disk.img")
    assert table["id"].lower() == disk["guid"]
    assert [(p["start"] * 512, p["size"] * 512, p["uuid"].lower(), p["type"].lower())
            for p in table["partitions"]] == \
        [(p["offset"], p["size"], p["partuuid"], p["type"]) for p in disk["partitions"]]
    assert [p["name"] for p in disk["partitions"]] == ["boot", "rootfs", "docker"]


# --- GPT short type names ---------------------------------------------------------------------

# UEFI 2.10 §5.3.3 and the UAPI Discoverable Partitions Specification
GPT_TYPES = {
    "esp": "c12a7328-f81f-11d2-ba4b-00a0c93ec93b",
    "xbootldr": "bc13c2ff-59e6-4262-a352-b275fd6f7172",
    "linux": "0fc63daf-8483-4772-8e79-3d69d8477de4",
    "root-arm64": "b921b045-1df0-41c3-af44-4c6f280d3fae",
    "usr-arm64": "b0e01050-ee5f-4390-949a-9101b17104e9",
    "root-x86-64": "4f68bce3-e8cd-4db1-96e7-fbcaf984b709",
    "home": "933ac7e1-2eb4-4f13-b844-0e14e2aef915",
    "srv": "3b8f8425-20e0-4f3b-907f-1a25a76f98e8",
    "var": "4d21b016-b534-45c2-a9fb-5c16e091fd2d",
    "tmp": "7ec6f557-3bc5-4aca-b293-16ef5df639d1",
    "swap": "0657fd6d-a4ab-43c4-84e5-0933c84b4f4f",
    "microsoft-basic-data": "ebd0a0a2-b9e5-4433-87c0-68b6b72699c7",
}


def test_gpt_short_type_names(tmp_path: Path) -> None:
    parts = "".join(f"  - {{name: p{i}, fs: ext4, size: 8MiB, mount: /m{i}, type: {name}}}\n"
                    for i, name in enumerate(GPT_TYPES))
    (tmp_path / "layout.yaml").write_text(
        "version: 1\nname: types\nepoch: 1718878001\npartitions:\n"
        "  - {name: root, fs: ext4, size: 8MiB, mount: /}\n"  # no type: linux for ext4
        "  - {name: boot, fs: vfat, size: 8MiB, mount: /boot}\n"  # no type: basic data
        + parts + "disk:\n  table: gpt\n")
    result = compose("-q", "build", "layout.yaml", "-o", "out", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    got = [p["type"].lower() for p in sfdisk_json(tmp_path / "out/disk.img")["partitions"]]
    assert got == [GPT_TYPES["linux"], GPT_TYPES["microsoft-basic-data"], *GPT_TYPES.values()]


# --- tools/capture-golden.sh --------------------------------------------------------------------

def test_capture_script_keeps_xattrs_acls_numeric_owners(tmp_path: Path) -> None:
    """The archive options the README promises, as the script passes them to tar (tar and
    systemctl are stand-ins that record their arguments; the script itself insists on root)."""
    need_root("capture-golden.sh refuses to run as another user")
    need("sh")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "tar-args"
    (bin_dir / "systemctl").write_text("#!/bin/sh\nexit 0\n")
    (bin_dir / "tar").write_text(f"#!/bin/sh\nprintf '%s\\n' \"$@\" > {log}\n")
    for tool in ("systemctl", "tar"):
        (bin_dir / tool).chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}",
           "GG_ROOT": str(tmp_path / "gg")}
    done = subprocess.run(["sh", str(TOOLS / "capture-golden.sh"), str(tmp_path / "o.tar.gz")],
                          env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    args = log.read_text().splitlines()
    for option in ("--create", "--gzip", "--xattrs", "--xattrs-include=*", "--acls",
                   "--numeric-owner", "--sparse", "--one-file-system"):
        assert option in args, option
    assert args[args.index("--file") + 1] == str(tmp_path / "o.tar.gz")
    assert str(tmp_path / "gg") in args and "/etc/systemd/system" in args


def test_gpt_partition_names_hold_36_utf16_units(tmp_path: Path) -> None:
    """UEFI: PartitionName is 72 bytes of UTF-16LE. 36 characters fit and sfdisk reads them
    back; 37 are a layout error, never truncated and never written past the entry."""
    name36 = "p" + "0123456789" * 3 + "abcde"
    assert len(name36) == 36
    (tmp_path / "layout.yaml").write_text(
        "version: 1\nname: names\nepoch: 1718878001\npartitions:\n"
        f"  - {{name: {name36}, fs: ext4, size: 8MiB, mount: /}}\n"
        "  - {name: second, fs: ext4, size: 8MiB, mount: /second}\ndisk:\n  table: gpt\n")
    result = compose("-q", "build", "layout.yaml", "-o", "out", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    rows = sfdisk_json(tmp_path / "out/disk.img")["partitions"]
    assert [r.get("name") for r in rows] == [name36, "second"]
    (tmp_path / "layout.yaml").write_text(
        (tmp_path / "layout.yaml").read_text().replace(name36, name36 + "f"))
    result = compose("-q", "build", "layout.yaml", "-o", "out2", cwd=tmp_path)
    assert result.returncode == 1
    assert f"partition '{name36}f': GPT names hold at most 36 UTF-16 characters" in \
        result.stderr
    assert not (tmp_path / "out2").exists()
