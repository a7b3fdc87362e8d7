#!/usr/bin/env python3
"""Print the README's layout reference, rendered from composer/layout/settings.py, or with a
path, replace the reference in that README:

    python3 tools/gen_reference.py            # print the Markdown
    python3 tools/gen_reference.py README.md  # rewrite the block between the REFERENCE markers
"""

from __future__ import annotations

import sys
from pathlib import Path

from composer.layout.reference import render, replace_in


def main(argv: list[str]) -> int:
    if not argv:
        sys.stdout.write(render())
        return 0
    path = Path(argv[0])
    path.write_text(replace_in(path.read_text(encoding="utf-8")), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
