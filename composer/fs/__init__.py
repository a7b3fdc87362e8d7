"""File-system writers, one module per format, registered by their `fs:` name."""
