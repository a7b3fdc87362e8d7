"""Device records: one device per CSV row or JSON line, validated before anything is written.

Every problem is one ComposerError located at `file:line` with the field and a hint; all of a
file's problems are reported together. A record may only set what the layout's `personalize.vary`
lists, so a golden build prepared for it. A record keeps the paths of its PEM files, not their
bytes, so a fleet of any size costs little memory; `Device.pem()` reads and checks a file again
when the device's build needs it. Key bytes are never shown: messages name the field only.
"""

from __future__ import annotations

import csv
import difflib
import itertools
import json
import re
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from composer.errors import ComposerError, ComposerErrors, Loc
from composer.layout.model import Personalize, Vary

ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
# AWS IoT CreateThing: thingName matches [a-zA-Z0-9:_-]+, 1 to 128 characters
THING_NAME = re.compile(r"^[a-zA-Z0-9:_-]{1,128}$")
PKCS11 = "pkcs11:"
ENDPOINT_FIELDS = {  # record field -> the Nucleus configuration key it sets
    "data_endpoint": "iotDataEndpoint",
    "cred_endpoint": "iotCredEndpoint",
    "region": "awsRegion",
    "role_alias": "iotRoleAlias",
}
FIELD_VARY = {"thing_name": Vary.THING_NAME, "certificate": Vary.CERTIFICATE,
              "private_key": Vary.PRIVATE_KEY, "template_parameters": Vary.TEMPLATE_PARAMETERS,
              **{name: Vary.ENDPOINTS for name in ENDPOINT_FIELDS}}
REQUIRED_WHEN_VARIED = ("thing_name", "certificate", "private_key")
MAX_PEM = 64 << 10  # a certificate or key file is a few KiB; refuse to read a stray big file
PEM_CERT = re.compile(rb"-----BEGIN CERTIFICATE-----\r?\n[A-Za-z0-9+/=\r\n]+"
                      rb"-----END CERTIFICATE-----\r?\n?")
PEM_KEY = re.compile(rb"-----BEGIN ((RSA|EC|ENCRYPTED) )?PRIVATE KEY-----\r?\n"
                     rb"[A-Za-z0-9+/=\r\n:,-]+"
                     rb"-----END ((RSA|EC|ENCRYPTED) )?PRIVATE KEY-----\r?\n?")


@dataclass(frozen=True, slots=True)
class Device:
    """One device's inputs, checked."""

    id: str
    loc: Loc
    thing_name: str | None = None
    certificate_file: Path | None = None  # PEM
    private_key_file: Path | None = None  # PEM; None with a URI
    private_key_uri: str | None = None  # pkcs11:...
    endpoints: Mapping[str, str] = field(default_factory=dict)  # Nucleus key -> value
    template_parameters: Mapping[str, str] = field(default_factory=dict)
    fs_uuids: Mapping[str, uuid.UUID] = field(default_factory=dict)  # partition -> pinned
    part_uuids: Mapping[str, uuid.UUID] = field(default_factory=dict)

    def certificate(self) -> bytes | None:
        return _read_pem(self, self.certificate_file, PEM_CERT, "certificate")

    def private_key(self) -> bytes | None:
        return _read_pem(self, self.private_key_file, PEM_KEY, "private_key")


def _read_pem(device: Device, path: Path | None, pattern: re.Pattern[bytes],
              name: str) -> bytes | None:
    if path is None:
        return None
    problems: list[str] = []
    data = _pem_bytes(path, str(path), pattern, name, lambda _n, m, _h=None: problems.append(m))
    if data is None:
        raise ComposerError(f"device {device.id}: {problems[0]}", device.loc, path=name,
                            hint="do not change device records while personalize runs")
    return data


def load_devices(path: Path, spec: Personalize) -> list[Device]:
    """Every record of `path` (CSV with a header row, or JSON lines), checked against `spec`;
    ComposerErrors with every problem found."""
    devices: list[Device] = []
    check_devices(path, spec, devices.append)
    return devices


def check_devices(path: Path, spec: Personalize,
                  each: Callable[[Device], None] | None = None) -> int:
    """Check every record of `path` against `spec` and each other (duplicate ids and thing
    names), reading the file once and keeping only each device's id and thing name; `each`
    sees every good device. Returns how many there are; raises ComposerErrors with every
    problem found. A fleet of any size is checked in little memory: `iter_devices` reads the
    devices again, one at a time."""
    errors: list[ComposerError] = []
    first_id: dict[str, int] = {}
    first_name: dict[str, int] = {}
    count = 0
    records = 0
    for loc, record in _records(path, errors):
        records += 1
        device = _device(path, loc, record, spec, errors)
        if device is None:
            continue
        for value, seen, what in ((device.id, first_id, "id"),
                                  (device.thing_name, first_name, "thing_name")):
            if value is None:
                continue
            if value.lower() in seen:
                errors.append(ComposerError(
                    f"duplicate {what} {value!r} (first at line {seen[value.lower()]})",
                    loc, hint=f"every device needs its own {what}", path=what))
                device = None
            else:
                seen[value.lower()] = loc.line or 0
        if device is not None:
            count += 1
            if each is not None:
                each(device)
    if not records and not errors:
        errors.append(ComposerError(f"{path} holds no device record", Loc(str(path)),
                                    hint="one device per CSV row or JSON line"))
    if errors:
        raise ComposerErrors(errors)
    return count


def iter_devices(path: Path, spec: Personalize) -> Iterator[Device]:
    """The devices of records `check_devices` passed, read again one at a time; a record that
    changed since is refused (do not change the records while personalize runs)."""
    errors: list[ComposerError] = []
    for loc, record in _records(path, errors):
        device = _device(path, loc, record, spec, errors)
        if errors:
            raise ComposerErrors(errors)
        if device is not None:
            yield device
    if errors:
        raise ComposerErrors(errors)


def _records(path: Path, errors: list[ComposerError]) -> Iterator[tuple[Loc, dict[str, Any]]]:
    """The file's records, read a line at a time."""
    try:
        with path.open("rb") as f:
            lines = _utf8_lines(path, f)
            first = next(lines, None)
            if first is None:
                return
            head = [first]
            while not head[-1].strip():  # the first non-blank line tells JSON from CSV
                more = next(lines, None)
                if more is None:
                    break
                head.append(more)
            text = itertools.chain(head, lines)
            yield from (_json_lines(path, text, errors) if _is_json(path, "".join(head))
                        else _csv_rows(path, text, errors))
    except OSError as exc:
        raise ComposerError(f"cannot read the device records {path}: {exc.strerror or exc}",
                            hint="give --devices a CSV or JSON lines file") from None


def _utf8_lines(path: Path, f: BinaryIO) -> Iterator[str]:
    offset = 0
    for raw in f:
        try:
            yield raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ComposerError(f"{path} is not UTF-8 (byte {offset + exc.start})",
                                Loc(str(path)), hint="save the device records as UTF-8") from None
        offset += len(raw)


def _is_json(path: Path, text: str) -> bool:
    if path.suffix.lower() in (".jsonl", ".ndjson", ".json"):
        return True
    if path.suffix.lower() == ".csv":
        return False
    return text.lstrip().startswith("{")


def _json_lines(path: Path, lines: Iterable[str],
                errors: list[ComposerError]) -> Iterator[tuple[Loc, dict[str, Any]]]:
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        loc = Loc(str(path), number, 1)
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            errors.append(ComposerError(f"not JSON: {exc.msg} at column {exc.colno}",
                                        Loc(str(path), number, exc.colno),
                                        hint="one JSON object per line"))
            continue
        if not isinstance(obj, dict):
            errors.append(ComposerError(f"expected a JSON object, got {type(obj).__name__}", loc,
                                        hint="one JSON object per line"))
            continue
        yield loc, obj


def _csv_rows(path: Path, lines: Iterable[str],
              errors: list[ComposerError]) -> Iterator[tuple[Loc, dict[str, Any]]]:
    reader = csv.reader(lines)
    header: list[str] | None = None
    for row in reader:
        number = reader.line_num
        if not any(cell.strip() for cell in row):
            continue
        if header is None:
            header = [cell.strip() for cell in row]
            continue
        loc = Loc(str(path), number, 1)
        if len(row) != len(header):
            errors.append(ComposerError(f"{len(row)} cells, the header has {len(header)}", loc,
                                        hint="quote a cell that holds a comma"))
            continue
        record: dict[str, Any] = {}
        for name, cell in zip(header, row, strict=True):
            if cell == "":
                continue  # an empty cell is an absent field
            if name == "template_parameters":
                try:
                    record[name] = json.loads(cell)
                except json.JSONDecodeError:
                    record[name] = cell  # refused below, with the field named
            else:
                record[name] = cell
        yield loc, record


def _known_fields(spec: Personalize) -> list[str]:
    names = ["id"] + [name for name, vary in FIELD_VARY.items() if vary in spec.vary]
    names += [f"{kind}.{part}" for part in spec.uuids for kind in ("uuid", "partuuid")]
    return names


def _device(path: Path, loc: Loc, record: Mapping[str, Any], spec: Personalize,
            errors: list[ComposerError]) -> Device | None:
    before = len(errors)

    def fail(name: str, message: str, hint: str | None = None) -> None:
        errors.append(ComposerError(message, loc, hint=hint, path=name))

    known = _known_fields(spec)
    for name in record:
        if name in known:
            continue
        vary = FIELD_VARY.get(name)
        if vary is not None:
            fail(name, f"{name} may not vary: personalize.vary does not list {vary.value}",
                 f"add {vary.value} to personalize.vary in the layout and build the golden "
                 "image again")
        else:
            close = difflib.get_close_matches(name, known, n=1)
            fail(name, f"unknown field {name!r}",
                 f"did you mean {close[0]!r}?" if close else f"fields: {', '.join(known)}")
    strings = {}
    for name in known:
        value = record.get(name)
        if value is None or name == "template_parameters":
            continue
        if not isinstance(value, str) or not value.strip() or "\0" in value:
            fail(name, f"{name} must be a non-empty string", None)
            continue
        strings[name] = value
    device_id = strings.get("id")
    if device_id is None:
        if "id" not in record:
            fail("id", "missing field 'id'", "every device needs an id (letters, digits, . _ -)")
    elif not ID.match(device_id):
        fail("id", f"id {device_id!r} is not letters, digits, '.', '_', '-' (at most 128, "
             "starting with a letter or digit)", "the id names the device's output files")
    for name in REQUIRED_WHEN_VARIED:
        if name in known and name not in record:
            fail(name, f"missing field {name!r}", f"personalize.vary lists "
                 f"{FIELD_VARY[name].value}: every device needs one")
    thing = strings.get("thing_name")
    if thing is not None and not THING_NAME.match(thing):
        fail("thing_name", f"thing_name {thing!r} has characters AWS IoT refuses or is longer "
             "than 128", "a thing name is letters, digits, ':', '_' and '-'")
    cert_file = _pem(path, strings.get("certificate"), PEM_CERT, "certificate", fail)
    key_uri = None
    key_file = None
    if (key_value := strings.get("private_key")) is not None:
        if key_value.startswith(PKCS11):
            key_uri = key_value
        else:
            key_file = _pem(path, key_value, PEM_KEY, "private_key", fail)
    parameters = _template_parameters(record.get("template_parameters"), fail)
    fs_uuids = _uuids(strings, "uuid", fail)
    part_uuids = _uuids(strings, "partuuid", fail)
    if len(errors) > before or device_id is None:
        return None
    return Device(device_id, loc, thing, cert_file, key_file, key_uri,
                  {ENDPOINT_FIELDS[n]: v for n, v in strings.items() if n in ENDPOINT_FIELDS},
                  parameters, fs_uuids, part_uuids)


def _pem(records: Path, value: str | None, pattern: re.Pattern[bytes], name: str,
         fail: Any) -> Path | None:
    """The PEM file a field names (relative to the records file), checked for its kind."""
    if value is None:
        return None
    file = records.parent / value
    return file if _pem_bytes(file, value, pattern, name, fail) is not None else None


def _pem_bytes(file: Path, shown: str, pattern: re.Pattern[bytes], name: str,
               fail: Any) -> bytes | None:
    try:
        with file.open("rb") as f:
            data = f.read(MAX_PEM + 1)
    except OSError as exc:
        fail(name, f"cannot read {name} file {shown!r}: {exc.strerror or exc}",
             "a path relative to the device records file")
        return None
    what = "certificate" if name == "certificate" else "private key"
    if len(data) > MAX_PEM or pattern.fullmatch(data.strip() + b"\n") is None:
        hint = "a pkcs11: URI for a key in a secure element" if name == "private_key" else None
        fail(name, f"{shown!r} is not one PEM {what}", hint or f"a PEM file with one {what}")
        return None
    return data


def _template_parameters(value: Any, fail: Any) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(k, str) and k and isinstance(v, str)
                                              for k, v in value.items()):
        fail("template_parameters", "template_parameters must be a JSON object of strings",
             'such as {"SerialNumber": "SN-0001"}')
        return {}
    return dict(value)


def _uuids(strings: Mapping[str, str], kind: str, fail: Any) -> dict[str, uuid.UUID]:
    found = {}
    for name, value in strings.items():
        if not name.startswith(kind + "."):
            continue
        try:
            found[name[len(kind) + 1:]] = uuid.UUID(value)
        except ValueError:
            fail(name, f"{value!r} is not a UUID", "such as 2f5a9c1e-7b44-4c1e-9d0a-3f1b6c8e2a10")
    return found
