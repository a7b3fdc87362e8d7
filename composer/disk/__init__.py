"""Whole-disk images: partition tables (gpt.py, mbr.py) and the assembler (assemble.py)."""
