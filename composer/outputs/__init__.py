"""Flashing outputs derived from an image and its block map: bmap, Android sparse, sfdisk."""
