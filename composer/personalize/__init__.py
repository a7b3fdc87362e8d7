"""Per-device personalization (`compose personalize`): device records (records.py), one
device's build on top of the golden one (device.py), block patches and their application
(patch.py), in-place YAML edits (yamlset.py), and the command's run (run.py). What the golden
build reserves for it is decided in composer/rules/personal.py; docs/personalize.md says why."""
