"""Patches made straight from the golden plan (composer/personalize/delta.py) against complete
builds: for devices of every record shape, the patch files equal those diffed from each
device's --full build byte for byte, and golden + patch is that build (sha256 of the whole
image, e2fsck -fn). A device that outgrows the reserved room is built the slow way, and says
so. Judged by the --full build's own patches (made by diffing two complete images), e2fsck and
sha256, never by the delta code."""

from __future__ import annotations

import hashlib
import json
import signal
import subprocess
from pathlib import Path

import pytest

from tests.conftest import compose, copy_layouts, make_golden, need
from tests.flashkit import e2fsck_clean
from tests.stopkit import assert_session_ends, assert_stopped_cleanly, stop_at
from tests.test_personalize import pem_pair, personal_layout
from tests.test_personalize_secrets_line import SECRETS

LONG_THING = "Line-" + "x" * 118 + "-9:_Z"  # 128 characters, the most AWS IoT takes
PKCS11 = "pkcs11:token=gg;object=devkey;type=private"


VARIED = [
    {"id": "v01", "thing_name": "T-01", "certificate": "r2.crt", "private_key": "r2.key"},
    {"id": "v02", "thing_name": LONG_THING, "certificate": "r4.crt", "private_key": "r4.key"},
    {"id": "v03", "thing_name": "T-03", "certificate": "ec.crt", "private_key": "ec.key",
     "data_endpoint": "abc-ats.iot.us-east-1.amazonaws.com",
     "cred_endpoint": "c.credentials.iot.us-east-1.amazonaws.com", "region": "us-east-1",
     "role_alias": "Alias"},
    {"id": "v04", "thing_name": "T-04", "certificate": "r3.crt", "private_key": PKCS11,
     "template_parameters": {"SerialNumber": "SN-4", "Site": "Plant 2"}},
    {"id": "v05", "thing_name": "T-05", "certificate": "r2.crt", "private_key": "r2.key",
     "uuid.rootfs": "2f5a9c1e-7b44-4c1e-9d0a-3f1b6c8e2a10",
     "partuuid.rootfs": "0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d"},
    {"id": "v06", "thing_name": LONG_THING[:-1] + "6", "certificate": "ec.crt",
     "private_key": PKCS11, "uuid.rootfs": "7d0c1a9e-2b3f-4c5d-8e6f-a1b2c3d4e5f6",
     "template_parameters": {"SerialNumber": "S" * 200}},
    {"id": "v07", "thing_name": "T-07", "certificate": "r4.crt", "private_key": "r4.key",
     "region": "eu-central-1", "template_parameters": {"SerialNumber": "SN-7"}},
    {"id": "v08", "thing_name": "T-08", "certificate": "r3.crt", "private_key": "r3.key",
     "partuuid.rootfs": "11111111-2222-4333-8444-555555555555"},
]


@pytest.fixture(scope="module")
def varied(tmp_path_factory: pytest.TempPathFactory, golden: Path) -> dict[str, Path]:
    need("openssl")
    base = tmp_path_factory.mktemp("delta")
    layout = personal_layout(base / "in", golden)
    done = compose("-q", "build", str(layout), "-o", str(base / "golden"))
    assert done.returncode == 0, done.stderr
    keys = layout.parent
    for name, key in (("r2", ("rsa:2048",)), ("r3", ("rsa:3072",)), ("r4", ("rsa:4096",)),
                      ("ec", ("ec", "-pkeyopt", "ec_paramgen_curve:P-256"))):
        pem_pair(keys, name, key)
    records = keys / "varied.jsonl"
    records.write_text("".join(json.dumps(d) + "\n" for d in VARIED))
    for out, more in (("full", ["--full"]), ("lean", ["--jobs", "2"]), ("one", ["--jobs", "1"])):
        done = compose("-q", "personalize", str(base / "golden"), "--devices", str(records),
                       "-o", str(base / out), *more, cwd=keys)
        assert done.returncode == 0, done.stderr
    return {"base": base, "layout": layout, "golden": base / "golden", "keys": keys}


def _sha(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _listed(out: Path) -> dict[str, dict]:
    return {d["id"]: d for d in json.loads((out / "personalize.json").read_text())["devices"]}


def test_every_device_takes_the_golden_plan_path(varied: dict[str, Path]) -> None:
    listed = _listed(varied["base"] / "lean")
    assert sorted(listed) == sorted(d["id"] for d in VARIED)
    assert {d: entry["rebuilt"] for d, entry in listed.items()} == \
        {d["id"]: None for d in VARIED}
    assert all(entry["full"] is None for entry in listed.values())


@pytest.mark.parametrize("device", VARIED, ids=lambda d: d["id"])
def test_patches_from_the_golden_plan_are_the_full_builds(varied: dict[str, Path],
                                                          device: dict) -> None:
    """The --full run's patches come from diffing two complete images: the fast path's must
    be the same files, byte for byte, for every image."""
    full, lean = varied["base"] / "full", varied["base"] / "lean"
    names = sorted(p.name for p in (full / device["id"]).glob("*.patch"))
    assert names == ["boot.img.patch", "disk.img.patch", "docker.img.patch", "rootfs.img.patch"]
    assert sorted(p.name for p in (lean / device["id"]).iterdir()) == names
    for name in names:
        assert (lean / device["id"] / name).read_bytes() == \
            (full / device["id"] / name).read_bytes(), name
    assert _listed(lean)[device["id"]]["patches"] == _listed(full)[device["id"]]["patches"]
    assert _listed(lean)[device["id"]]["set"] == _listed(full)[device["id"]]["set"]


@pytest.mark.parametrize("device", [VARIED[1], VARIED[5]], ids=lambda d: d["id"])
def test_golden_plus_fast_patch_is_the_full_image_and_checks_clean(
        varied: dict[str, Path], tmp_path: Path, device: dict) -> None:
    need("e2fsck")
    for image in ("rootfs.img", "disk.img"):
        target = tmp_path / image
        subprocess.run(["cp", "--sparse=always", str(varied["golden"] / image), str(target)],
                       check=True)
        patch = varied["base"] / "lean" / device["id"] / f"{image}.patch"
        done = compose("-q", "personalize", "--apply", str(patch), str(target))
        assert done.returncode == 0, done.stderr
        assert _sha(target) == _sha(varied["base"] / "full" / device["id"] / "full" / image)
        if image == "rootfs.img":
            e2fsck_clean(target)
        target.unlink()


def test_jobs_do_not_change_a_byte(varied: dict[str, Path]) -> None:
    one, two = varied["base"] / "one", varied["base"] / "lean"
    assert (one / "personalize.json").read_bytes() == (two / "personalize.json").read_bytes()
    for device in VARIED:
        for patch in (one / device["id"]).iterdir():
            assert patch.read_bytes() == (two / device["id"] / patch.name).read_bytes()
            assert patch.stat().st_mode & 0o777 == 0o600


def test_a_device_outgrowing_its_room_is_built_and_says_so(varied: dict[str, Path]) -> None:
    """4 KiB of slack after each config file: two 3,000-character template parameters do not
    fit, so that device's images are built and diffed (its patch is no longer small, but
    exact); the device beside it still takes the fast path."""
    big = {"id": "big", "thing_name": "T-big", "certificate": "r2.crt", "private_key": "r2.key",
           "template_parameters": {"A": "a" * 3000, "B": "b" * 3000}}
    records = varied["keys"] / "big.jsonl"
    records.write_text(json.dumps(big) + "\n" + json.dumps(VARIED[0]) + "\n")
    for out, more in (("big-full", ["--full"]), ("big-lean", [])):
        done = compose("personalize", str(varied["golden"]), "--devices", str(records),
                       "-o", str(varied["base"] / out), *more, cwd=varied["keys"])
        assert done.returncode == 0, done.stderr
        if out == "big-lean":  # one line per device on stderr, in the records' order
            said = done.stderr.splitlines()
            big = next(line for line in said if line.startswith("device big:"))
            assert "(images built in full: the device's files do not fit the room kept in " \
                "rootfs.img)" in big, done.stderr
            small = next(line for line in said if line.startswith("device v01:"))
            assert "built in full" not in small and said.index(big) < said.index(small)
    listed = _listed(varied["base"] / "big-lean")
    assert "do not fit" in listed["big"]["rebuilt"] and listed["v01"]["rebuilt"] is None
    for device in ("big", "v01"):
        for patch in (varied["base"] / "big-full" / device).glob("*.patch"):
            assert (varied["base"] / "big-lean" / device / patch.name).read_bytes() == \
                patch.read_bytes(), (device, patch.name)
    assert listed["big"]["patches"] != listed["v01"]["patches"]


@pytest.fixture(scope="module")
def secrets_golden(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    need("openssl")
    base = tmp_path_factory.mktemp("delta-secrets")
    snapshot = make_golden(base / "golden-device.tar.gz", "--variant", "cloud-secrets")
    layouts = copy_layouts(base / "in", snapshot)
    text = (layouts / "demo.yaml").read_text()
    layout = layouts / "line.yaml"
    layout.write_text(text.replace("\ndisk:", "\npersonalize:\n  uuids: [rootfs]\ndisk:", 1))
    done = compose("-q", "build", str(layout), "-o", str(base / "golden"))
    assert done.returncode == 0, done.stderr
    for name in ("s1", "s2"):
        pem_pair(layouts, name)
    records = layouts / "devices.jsonl"
    records.write_text("".join(json.dumps(
        {"id": f"s{n}", "thing_name": f"S-{n}", "certificate": f"s{n}.crt",
         "private_key": f"s{n}.key"}) + "\n" for n in (1, 2)))
    return {"base": base, "layout": layout, "golden": base / "golden", "records": records}


def test_secrets_golden_with_a_store_sized_value_matches_the_full_build(
        secrets_golden: dict[str, Path]) -> None:
    """SecretManager's secretResponse goes where `secrets: strip` left `runtime: {}`: with a
    value of a real store's size (fixed here, so the two runs can be compared; the SDK's
    ciphertexts are random), and without one, the fast path's patches are the full build's."""
    from composer.personalize.run import open_golden, personalize

    secret = ("services", "aws.greengrass.SecretManager", "runtime", "secretResponse")

    def store(device: object) -> dict[tuple[str, ...], str]:
        ident = getattr(device, "id")  # noqa: B009 - a records.Device
        return {secret: json.dumps({"secrets": [{"arn": "arn:aws:secretsmanager:x", "name": ident,
                                                 "encryptedSecretString": "QUJD" * 400}]})}

    golden = open_golden(secrets_golden["golden"], secrets_golden["layout"])
    base = secrets_golden["base"]
    for label, extra in (("plain", None), ("store", store)):
        personalize(golden, secrets_golden["records"], base / f"{label}-full", True,
                    extra_values=extra)
        lean = personalize(golden, secrets_golden["records"], base / f"{label}-lean", False,
                           extra_values=extra, jobs=2)
        assert (lean.devices, lean.rebuilt) == (2, 0), label
        assert [d["rebuilt"] for d in _listed(base / f"{label}-lean").values()] == [None, None]
        for device in ("s1", "s2"):
            for patch in (base / f"{label}-full" / device).glob("*.patch"):
                assert (base / f"{label}-lean" / device / patch.name).read_bytes() == \
                    patch.read_bytes(), (label, device, patch.name)


def test_real_secrets_take_the_fast_path_and_check_clean(secrets_golden: dict[str, Path],
                                                         tmp_path: Path) -> None:
    need("e2fsck")
    out = secrets_golden["base"] / "real"
    done = compose("-q", "personalize", str(secrets_golden["golden"]), "--devices",
                   str(secrets_golden["records"]), "-o", str(out), "--secrets", "-",
                   cwd=secrets_golden["records"].parent, stdin=json.dumps(SECRETS))
    assert done.returncode == 0, done.stderr
    listed = _listed(out)
    assert [listed[d]["rebuilt"] for d in ("s1", "s2")] == [None, None]
    target = tmp_path / "rootfs.img"
    subprocess.run(["cp", "--sparse=always", str(secrets_golden["golden"] / "rootfs.img"),
                    str(target)], check=True)
    done = compose("-q", "personalize", "--apply", str(out / "s1" / "rootfs.img.patch"),
                   str(target))
    assert done.returncode == 0, done.stderr
    e2fsck_clean(target)


@pytest.mark.parametrize(("signum", "whole_group"), [(signal.SIGINT, True),
                                                      (signal.SIGTERM, False)])
def test_a_stopped_run_leaves_exactly_what_its_manifest_lists(
        varied: dict[str, Path], signum: int, whole_group: bool) -> None:
    """Stopped while its --jobs processes make devices: one last message, no process left, no
    spill file, and OUT holds exactly the devices personalize.json lists, each whole."""
    records = varied["keys"] / f"many-{signum}.jsonl"
    records.write_text("".join(json.dumps({"id": f"m{n:05d}", "thing_name": f"M-{n:05d}",
                                           "certificate": "r2.crt", "private_key": "r2.key"})
                               + "\n" for n in range(3000)))
    out = varied["base"] / f"stopped-{signum}"
    code, text, sid = stop_at(["--debug", "personalize", str(varied["golden"]), "--devices",
                               str(records), "-o", str(out), "--jobs", "2"],
                              "golden ready in",  # the processes that make devices start now
                              signum, whole_group, cwd=varied["keys"])
    assert_stopped_cleanly(code, text, signum)
    assert_session_ends(sid, 5)  # the parent joined its processes before it exited
    listed = _listed(out)
    assert len(listed) < 3000  # stopped before the end
    assert sorted(p.name for p in out.iterdir()) == sorted([*listed, "personalize.json"])
    for entry in listed.values():
        for patch in entry["patches"]:
            assert _sha(out / patch["file"]) == patch["sha256"]
