"""Rules turn sources into the device tree: each places entries and reports what it changed."""
