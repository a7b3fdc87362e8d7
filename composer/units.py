"""Sizes as the layout writes them ("64MiB", "1G", 4096) and how to print them."""

from __future__ import annotations

import re

KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB
TiB = 1024 * GiB

_UNITS = {"": 1, "k": KiB, "kib": KiB, "m": MiB, "mib": MiB, "g": GiB, "gib": GiB,
          "t": TiB, "tib": TiB}
# ASCII digits only: \d would take "١٢" or "²", which int() then reads (or chokes on)
_SIZE = re.compile(r"^[ \t]*([0-9]+)[ \t]*([a-zA-Z]*)[ \t]*$")


class SizeError(ValueError):
    pass


def parse_size(text: str | int) -> int:
    """Bytes from "64MiB", "64M", "512K", "1GiB" or an int; K/M/G are binary units too."""
    if isinstance(text, bool):
        raise SizeError(f"{text!r} is not a size")
    if isinstance(text, int):
        if text < 0:
            raise SizeError(f"{text} is negative")
        return text
    match = _SIZE.match(text) if len(text) <= 40 else None  # no 10⁶-digit numbers
    if not match or match.group(2).lower() not in _UNITS:
        raise SizeError(f"{text!r} is not a size (use a number and a unit: K, M, G, T "
                        "or KiB, MiB, GiB, TiB, all binary)")
    return int(match.group(1)) * _UNITS[match.group(2).lower()]


def align_up(value: int, alignment: int) -> int:
    return -(-value // alignment) * alignment


def human_size(n: int) -> str:
    for unit, factor in (("TiB", TiB), ("GiB", GiB), ("MiB", MiB), ("KiB", KiB)):
        if n >= factor:
            value = n / factor
            return f"{value:.1f} {unit}" if value != int(value) else f"{int(value)} {unit}"
    return f"{n} bytes"
