"""On-disk structures declared once: named fields with their `struct` formats, compiled once.

A declaration is what the public source shows as a table, in its order, with its names:

    GPT_ENTRY = Struct("GPT partition entry", "UEFI 2.10 §5.3.3", 128, "<", (
        ("partition_type_guid", "16s"), ("unique_partition_guid", "16s"), ...))

The size the source gives is checked when the module is imported (a real error, not an assert
that `python -O` drops), so a mistyped format fails every test instead of writing bad tables.
`pack(**fields)` and `unpack(data)` serve writers and readers with the same declaration;
fields left out of `pack` are zero (reserved fields, and the checksums patched in afterwards at
`offset(name)`). Hot loops use `pack_values(*values)`, the compiled `struct.Struct.pack` in
field order, and build no mapping per call.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

_ZERO_BY_KIND = {"s": b"", "p": b"", "?": False, "e": 0.0, "f": 0.0, "d": 0.0}


@dataclass(frozen=True, slots=True)
class Struct:
    """One on-disk structure: its name, its public source, its size and its fields in order."""

    name: str
    source: str  # where a reader checks it: a spec section, a header file
    size: int  # the size the source gives
    byte_order: str  # "<" little endian, ">" big endian (never native: images travel)
    fields: tuple[tuple[str, str], ...]  # (name, struct format of that one field)
    compiled: struct.Struct = field(init=False, repr=False, compare=False)
    _offsets: Mapping[str, int] = field(init=False, repr=False, compare=False)
    _zeros: tuple[Any, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.byte_order not in ("<", ">"):
            raise ValueError(f"{self.name}: byte order {self.byte_order!r} is not < or >")
        names = [name for name, _ in self.fields]
        if len(set(names)) != len(names):
            raise ValueError(f"{self.name}: a field name appears twice")
        compiled = struct.Struct(self.byte_order + "".join(fmt for _, fmt in self.fields))
        if compiled.size != self.size:
            raise ValueError(f"{self.name}: the fields make {compiled.size} bytes, "
                             f"{self.source} says {self.size}")
        offsets, at = {}, 0
        for name, fmt in self.fields:
            offsets[name] = at
            at += struct.calcsize(self.byte_order + fmt)
        object.__setattr__(self, "compiled", compiled)
        object.__setattr__(self, "_offsets", offsets)
        object.__setattr__(self, "_zeros", tuple(_ZERO_BY_KIND.get(fmt[-1], 0)
                                                 for _, fmt in self.fields))

    def pack(self, **values: Any) -> bytes:
        """The bytes for named field values; fields not given are zero."""
        return self.compiled.pack(*self._ordered(values))

    def pack_into(self, buffer: bytearray | memoryview, offset: int, **values: Any) -> None:
        self.compiled.pack_into(buffer, offset, *self._ordered(values))

    def pack_values(self, *values: Any) -> bytes:
        """The bytes for every field's value in declaration order (for hot loops)."""
        return self.compiled.pack(*values)

    def unpack(self, data: bytes | bytearray | memoryview, offset: int = 0) -> dict[str, Any]:
        """The named field values at `offset` of `data`."""
        values = self.compiled.unpack_from(data, offset)
        return {name: value for (name, _), value in zip(self.fields, values, strict=True)}

    def offset(self, name: str) -> int:
        """The byte offset of a field inside the structure."""
        return self._offsets[name]

    def field_size(self, name: str) -> int:
        fmt = dict(self.fields)[name]
        return struct.calcsize(self.byte_order + fmt)

    def _ordered(self, values: Mapping[str, Any]) -> list[Any]:
        unknown = set(values) - self._offsets.keys()
        if unknown:
            raise TypeError(f"{self.name} has no field {', '.join(sorted(unknown))}")
        return [values.get(name, zero) for (name, _), zero in zip(self.fields, self._zeros,
                                                                  strict=True)]
