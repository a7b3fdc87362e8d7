"""EntryRecord.to_line() writes manifest.json's entry lines by hand: it must spell every record
exactly as json does for its object (sorted keys, ", " and ": ", no ASCII escaping)."""

from __future__ import annotations

import json

import pytest

from composer.outputs.manifest import EntryRecord

_JSON = json.JSONEncoder(sort_keys=True, ensure_ascii=False, separators=(", ", ": ")).encode

RECORDS = [
    EntryRecord("/", "dir", "0755", 0, 0, 1718878001, 1718878001_000000000),
    EntryRecord("/etc/hostname", "file", "0644", 0, 0, 1, 1_000000001, size=10,
                sha256="ab" * 32),
    EntryRecord("/usr/bin/su", "file", "4755", 4294967295, 65534, -86400, -86399_999999999,
                size=0, sha256="00" * 32, xattrs=("security.capability", "user.\u00e9t\u00e9")),
    EntryRecord("/dev/null", "char", "0666", 0, 0, 0, 0, rdev=(1, 3)),
    EntryRecord("/dev/big", "block", "0600", 0, 6, 0, 0, rdev=(4095, 1048575)),
    EntryRecord('/we"ird\\name\\x01\t\u2028\U0001f600', "symlink", "0777", 1000, 1000, 5, 5,
                target='../"target"\\\n\u00fc'),
    EntryRecord("/var/lib/docker/l/a", "hardlink", "0644", 100000, 100000, 9, 9_5,
                target="/var/lib/docker/x", xattrs=("trusted.overlay.opaque",)),
    EntryRecord("/f", "fifo", "0000", 0, 0, 0, 0),
]


@pytest.mark.parametrize("record", RECORDS, ids=lambda r: r.kind + r.path[:12])
def test_line_is_what_json_writes(record: EntryRecord) -> None:
    assert record.to_line() == _JSON(record.to_obj())
    assert EntryRecord.from_obj(json.loads(record.to_line())) == record
