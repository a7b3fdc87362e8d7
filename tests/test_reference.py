"""Layout keys are declared once (composer/layout/settings.py): the loader allows exactly the
declared keys in each mapping and fills in the declared defaults, the writers' options agree
with the declarations, and the README's reference is their rendering."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from composer.errors import ComposerError, ComposerErrors
from composer.layout.load import load_layout
from composer.layout.reference import BEGIN, END, render
from composer.layout.settings import SETTINGS, WRITER_SECTIONS, Section, default, settings
from composer.registry import WRITERS
from tests.conftest import REPO, compose

README = (REPO / "README.md").read_text(encoding="utf-8")
# declared for a writer that does not implement them yet: the loader refuses them meanwhile
PENDING: set[tuple[str, str]] = set()


def test_readme_reference_is_the_rendered_declarations() -> None:
    block = README.split(BEGIN, 1)[1].split(END, 1)[0]
    assert block.strip() == render().strip()
    printed = subprocess.run([sys.executable, str(REPO / "tools" / "gen_reference.py")],
                             capture_output=True, text=True, check=True).stdout
    assert printed == render()


def test_the_reference_groups_keys_by_where_they_live() -> None:
    block = README.split(BEGIN, 1)[1].split(END, 1)[0]
    heads = re.findall(r"^\*\*(.+)\*\*$", block, re.M)
    assert heads == [s.heading for s in Section if settings(s)]
    for row in re.findall(r"^\| `([^`]+)` \|", block, re.M):
        assert not re.match(r"(ext4|vfat|disk): ", row), row  # no pseudo-nesting
    for key in ("inodes", "fat", "type", "block_size"):
        assert f"| `partitions[].{key}` |" in block
    for line in block.splitlines():
        if line.startswith("| `"):
            assert line.count(" | ") == 4, line  # key | type | default | example | meaning


_BASE = """\
version: 1
name: t
epoch: 1718878001
sources: {s: src/}
partitions:
  - {name: root, fs: ext4, size: 8MiB, mount: /}
  - {name: boot, fs: vfat, size: 8MiB, mount: /boot}
"""


def _errors(tmp_path: Path, text: str) -> list[str]:
    (tmp_path / "src").mkdir(exist_ok=True)
    path = tmp_path / "layout.yaml"
    path.write_text(text, encoding="utf-8")
    try:
        load_layout(path)
    except ComposerErrors as exc:
        return [e.render() for e in exc.errors]
    except ComposerError as exc:
        return [exc.render()]
    return []


def _placed(section: Section, key: str, value: str) -> str:
    """A layout with `key: value` in the mapping `section` describes."""
    item = f"{key}: {value}"
    if section is Section.TOP:
        return _BASE + f"{item}\n"
    if section is Section.SOURCES:
        return _BASE.replace("sources: {s: src/}", f"sources: {{s: src/, {item}}}")
    if section in (Section.PARTITION, Section.EXT4, Section.PARTITION_DISK):
        return _BASE.replace("mount: /}", f"mount: /, {item}}}") + "disk: {}\n"
    if section is Section.VFAT:
        return _BASE.replace("mount: /boot}", f"mount: /boot, {item}}}")
    if section is Section.DISK_RAW:
        return _BASE + f"disk:\n  raw:\n    - {{from: \"s:/x\", offset: 1MiB, {item}}}\n"
    if section is Section.DOCKER_IMAGES:
        return _BASE + f"docker:\n  images:\n    - {{archive: x.tar, {item}}}\n"
    mapping = {Section.DISK: "disk", Section.GREENGRASS: "greengrass",
               Section.SYSTEMD: "systemd", Section.DOCKER: "docker"}
    if section in mapping:
        return _BASE + f"{mapping[section]}:\n  from: \"s:/\"\n  {item}\n"
    if section is Section.PERSONALIZE:
        return _BASE + f"personalize:\n  {item}\n"
    assert section is Section.FILES
    return _BASE + f"files:\n  - {{to: /x, {item}}}\n"


def _unknown(errors: list[str], key: str) -> bool:
    return any(f"unknown key {key!r}" in e for e in errors)


@pytest.mark.parametrize("setting", [s for s in SETTINGS if s.section is not Section.SOURCES
                                     and s.example], ids=lambda s: s.path)
def test_every_declared_key_is_a_key_to_the_loader(tmp_path: Path, setting) -> None:
    errors = _errors(tmp_path, _placed(setting.section, setting.key, setting.example))
    fs = next((fs for fs, sec in WRITER_SECTIONS.items() if sec is setting.section), None)
    if (fs, setting.key) in PENDING:
        assert _unknown(errors, setting.key), errors
    else:
        assert not _unknown(errors, setting.key), errors


@pytest.mark.parametrize("section", [s for s in Section if s is not Section.SOURCES],
                         ids=lambda s: s.name)
def test_an_undeclared_key_is_refused_with_the_declared_ones_as_hint(tmp_path: Path,
                                                                    section: Section) -> None:
    errors = _errors(tmp_path, _placed(section, "zzzzzz", "1"))
    assert _unknown(errors, "zzzzzz"), errors


def test_defaults_the_loader_fills_in_are_the_declared_ones(tmp_path: Path) -> None:
    (tmp_path / "src").mkdir()
    path = tmp_path / "layout.yaml"
    path.write_text(_BASE.replace("mount: /}", "mount: /, type: linux}")
                    + "greengrass: {from: \"s:/gg\"}\ndocker: {from: \"s:/d\"}\ndisk: {}\n")
    layout = load_layout(path)
    assert layout.greengrass is not None and layout.docker is not None
    assert layout.disk is not None and layout.partitions[0].disk is not None
    assert layout.greengrass.secrets == default(Section.GREENGRASS, "secrets") == "strip"
    assert layout.greengrass.identity == default(Section.GREENGRASS, "identity") == "strip"
    assert layout.greengrass.keep == default(Section.GREENGRASS, "keep")
    assert layout.docker.to == default(Section.DOCKER, "to") == "/var/lib/docker"
    assert layout.disk.table == default(Section.DISK, "table") == "gpt"
    assert layout.disk.align == default(Section.DISK, "align") == 1 << 20
    assert layout.max_image_size == default(Section.TOP, "max_image_size") == 64 << 30
    assert layout.partitions[0].disk.bootable is default(Section.PARTITION_DISK, "bootable")


@pytest.mark.parametrize("fs", sorted(WRITERS))
def test_writer_options_agree_with_the_declarations(fs: str) -> None:
    writer = WRITERS[fs]
    section = WRITER_SECTIONS.get(fs)
    declared = {s.key: s for s in settings(section)} if section is not None else {}
    for key, spec in writer.options.items():
        assert key in declared, (fs, key)
        assert declared[key].option is spec.type, (fs, key)
        assert tuple(declared[key].choices) == tuple(spec.choices), (fs, key)
    assert {(fs, key) for key in set(declared) - set(writer.options)} <= PENDING


def _documented_options() -> dict[str, set[str]]:
    """The options README "Commands" gives each command, the global ones included."""
    section = README.split("## Commands", 1)[1].split("\n## ", 1)[0]
    synopsis = section.split("```", 2)[1]
    common = set(re.findall(r"`(--?[a-z][a-z-]*)`", section.split("Every command also takes",
                                                                   1)[1].split(".", 1)[0]))
    common |= {o for pair in re.findall(r"`(-\w)/(--[a-z-]+)`", section) for o in pair}
    found: dict[str, set[str]] = {"": set(common)}
    for line in synopsis.splitlines():
        match = re.match(r"compose (\w+)? ?(.*?)(#|$)", line)
        if match is None:
            continue
        options = set(re.findall(r"(?<![\w-])(--?[a-z][a-z-]*)", match.group(2)))
        if match.group(1):
            found[match.group(1)] = options | common
        else:
            found[""] |= options
    return found


@pytest.mark.parametrize("command", ["", "build", "validate", "plan"])
def test_help_renders_and_lists_the_documented_options(command: str) -> None:
    args = [command, "--help"] if command else ["--help"]
    result = compose(*args, env={"COLUMNS": "100", "TERM": "dumb"})
    assert result.returncode == 0, result.stderr
    text = result.stdout.split("Usage:", 1)[1].split("\n", 1)[1]  # the usage line names -m
    for artefact in ("<bool>", "{layout}", "<path>", "<text>", "<int>"):
        assert artefact not in text, (command, artefact)
    shown = set(re.findall(r"(?<![\w-])(--?[a-z][a-z-]*)", text)) - {"--help"}
    documented = _documented_options()[command]
    assert documented == shown, (command, documented ^ shown)
