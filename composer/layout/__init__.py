"""The layout file: YAML with marks kept, validated whole into frozen dataclasses."""

from composer.layout.load import load_layout
from composer.layout.model import Layout

__all__ = ["Layout", "load_layout"]
