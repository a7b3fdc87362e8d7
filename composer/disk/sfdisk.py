"""The sfdisk script of a disk plan: `sfdisk DEVICE < disk.sfdisk` recreates the tables.

Grammar: man sfdisk 2.38 "INPUT FORMATS" (docs/flashing.md §5). Every start and size is an
exact sector count with no unit suffix (sfdisk aligns suffixed sizes and can shrink them), and
every GUID and the MBR signature are written out (sfdisk picks random ones otherwise). sfdisk
only writes tables, never partition contents.

An sfdisk script cannot express a moved GPT entry array: sfdisk puts it back at LBA 2, so for
such plans the script says so in a comment, and `first-lba` keeps partitions where they are.
"""

from __future__ import annotations

from composer.disk.assemble import SECTOR, DiskPlan, PlannedPartition
from composer.disk.gpt import Attr
from composer.errors import ComposerError
from composer.types import TableType

# man sfdisk --part-attrs: names for bits 0-2; bits 48-63 are written as GUID:<bit>
_ATTR_NAMES = {
    Attr.REQUIRED: "RequiredPartition",
    Attr.NO_BLOCK_IO: "NoBlockIOProtocol",
    Attr.LEGACY_BIOS_BOOTABLE: "LegacyBIOSBootable",
}
TYPE_SPECIFIC_FIRST_BIT = 48


def sfdisk_script(plan: DiskPlan) -> str:
    lines = _header(plan) + [""] + [_partition(plan, p) for p in plan.partitions]
    return "\n".join(lines) + "\n"


def _header(plan: DiskPlan) -> list[str]:
    if plan.table is TableType.MBR:
        assert plan.mbr_signature is not None
        return ["label: dos", f"label-id: 0x{plan.mbr_signature:08x}", "unit: sectors",
                f"sector-size: {SECTOR}"]
    table = plan.gpt_table()
    lines = []
    if table.entry_lba != 2:
        lines.append(f"# the GPT entry array is at LBA {table.entry_lba} in the image; sfdisk "
                     "cannot move it there and will write it at LBA 2")
    return lines + [
        "label: gpt",
        f"label-id: {str(table.disk_guid).upper()}",
        "unit: sectors",
        f"first-lba: {table.first_usable_lba}",
        f"last-lba: {table.last_usable_lba}",
        "table-length: 128",
        f"sector-size: {SECTOR}",
    ]


def _partition(plan: DiskPlan, p: PlannedPartition) -> str:
    fields = [f"start={p.start_lba}", f"size={p.sectors}"]
    if plan.table is TableType.MBR:
        fields.append(f"type={p.mbr_type:x}")
        if p.bootable:
            fields.append("bootable")
        return ", ".join(fields)
    assert p.type_guid is not None and p.uuid is not None
    fields += [f"type={str(p.type_guid).upper()}", f"uuid={str(p.uuid).upper()}",
               f'name="{_quoted(p.name)}"']
    attrs = gpt_attrs(p.attributes)
    if attrs:
        fields.append(f'attrs="{attrs}"')
    return ", ".join(fields)


def gpt_attrs(bits: int) -> str:
    """Attribute bits the way `sfdisk --dump` writes them ("RequiredPartition GUID:60")."""
    words = [name for flag, name in _ATTR_NAMES.items() if bits & flag]
    words += [f"GUID:{bit}" for bit in range(TYPE_SPECIFIC_FIRST_BIT, 64) if bits >> bit & 1]
    return " ".join(words)


def _quoted(name: str) -> str:
    if '"' in name or "\\" in name or "\n" in name:
        raise ComposerError(f"partition name {name!r} cannot be written in an sfdisk script",
                            hint="drop the quote, backslash or newline from the name")
    return name
