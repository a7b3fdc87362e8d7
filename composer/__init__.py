"""composer: deterministic partition and disk images from a Greengrass golden-device snapshot."""

__version__ = "0.1.0"
