"""Image names as Docker's reference store keeps them in repositories.json: the familiar form
(`alpine:3.20`, `registry.example.com/team/app:1.0`), always with a tag."""

from __future__ import annotations

import re

_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_DOMAIN = r"(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*" \
          r"[a-zA-Z0-9])?)*(?::[0-9]+)?"
_NAME = re.compile(rf"^(?:{_DOMAIN}/)?{_COMPONENT}(?:/{_COMPONENT})*$")
_TAG = re.compile(r"^[\w][\w.-]{0,127}$")
DEFAULT_DOMAINS = ("docker.io", "index.docker.io")


class BadReference(ValueError):
    pass


def familiar(reference: str) -> str:
    """`name:tag` as Docker records it: docker.io/library/ dropped, `:latest` added."""
    if "@" in reference:
        raise BadReference(f"{reference!r} names a digest; give a tag (name:tag)")
    name, tag = reference, "latest"
    last = reference.rsplit("/", 1)[-1]
    if ":" in last:
        name, tag = reference.rsplit(":", 1)
    if not _TAG.match(tag):
        raise BadReference(f"{reference!r} has an invalid tag {tag!r}")
    if len(name) > 255 or not _NAME.match(name):
        raise BadReference(f"{reference!r} is not a valid image name (lowercase letters, "
                           "digits and separators, an optional registry host first)")
    first, _, rest = name.partition("/")
    if rest and first in DEFAULT_DOMAINS:
        name = rest
        if name.startswith("library/") and name.count("/") == 1:
            name = name.removeprefix("library/")
    elif rest and not ("." in first or ":" in first or first == "localhost") \
            and first != first.lower():
        raise BadReference(f"{reference!r} is not a valid image name")
    return f"{name}:{tag}"


def repository(familiar_ref: str) -> str:
    return familiar_ref.rsplit(":", 1)[0]
