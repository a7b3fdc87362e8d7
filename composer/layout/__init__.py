"""The layout file: YAML with marks kept (yamlload), validated whole (load) into frozen values
(model)."""
