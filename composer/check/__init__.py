"""Checks of finished builds: provenance, verify, reproduce and diff (README "Checking builds")."""
