"""Setting values in effectiveConfig.yaml in place (composer/personalize/yamlset.py): every other
line stays byte for byte, and PyYAML reads the result as the original tree with exactly the
values set."""

from __future__ import annotations

import pytest
import yaml

from composer.personalize.yamlset import set_values
from composer.rules.yamlcut import YamlCutError

JACKSON = """---
services:
  aws.greengrass.Nucleus:
    configuration:
      awsRegion: "us-east-1"
    version: "2.12.6"
  main:
    lifecycle:
      run: |
        echo one
        echo two
system:
  rootpath: "/greengrass/v2"
  certificateFilePath: "/greengrass/v2/thingCert.crt"
"""


def test_values_are_replaced_and_inserted_in_place() -> None:
    values = {("system", "thingName"): "Dev-1",
              ("system", "CERTIFICATEFILEPATH"): "/gg/c.crt",
              ("services", "aws.greengrass.Nucleus", "configuration", "iotDataEndpoint"): "x",
              ("services", "aws.greengrass.FleetProvisioningByClaim", "configuration",
               "templateParameters", "A"): "1",
              ("services", "aws.greengrass.FleetProvisioningByClaim", "configuration",
               "templateParameters", "B"): "2",
              ("services", "main", "lifecycle", "setenv"): "y"}
    out = set_values(JACKSON.encode(), values).decode()
    doc = yaml.safe_load(out)
    want = yaml.safe_load(JACKSON)
    want["system"].update(thingName="Dev-1", certificateFilePath="/gg/c.crt")
    want["services"]["aws.greengrass.Nucleus"]["configuration"]["iotDataEndpoint"] = "x"
    want["services"]["aws.greengrass.FleetProvisioningByClaim"] = {
        "configuration": {"templateParameters": {"A": "1", "B": "2"}}}
    want["services"]["main"]["lifecycle"]["setenv"] = "y"
    assert doc == want
    # every original line but the replaced one is still there, in order
    kept = iter(out.splitlines())
    for line in JACKSON.splitlines():
        if "certificateFilePath" in line:
            assert '  certificateFilePath: "/gg/c.crt"' in out
            continue
        assert any(line == other for other in kept), line
    assert '      awsRegion: "us-east-1"\n      iotDataEndpoint: "x"\n' in out
    assert "        echo two\n      setenv: \"y\"\n" in out  # after the block scalar, not in it


def test_a_document_without_a_final_newline() -> None:
    out = set_values(b"system:\n  rootpath: /gg", {("system", "thingName"): "T"})
    assert out == b'system:\n  rootpath: /gg\n  thingName: "T"\n'


@pytest.mark.parametrize("text, out", [
    ("services:\n  sm:\n    runtime:\n      {}\n    version: 1\n",
     'services:\n  sm:\n    runtime:\n      secretResponse: "s"\n    version: 1\n'),
    ("services:\n  sm:\n    runtime: {}\n    version: 1\n",
     'services:\n  sm:\n    runtime:\n      secretResponse: "s"\n    version: 1\n'),
])
def test_an_emptied_mapping_gets_the_new_key_in_block_style(text: str, out: str) -> None:
    """yamlcut leaves `{}` where it removed every key (SecretManager's runtime after
    secrets: strip); a device's secretResponse goes back there."""
    path = ("services", "sm", "runtime", "secretResponse")
    assert set_values(text.encode(), {path: "s"}).decode() == out


@pytest.mark.parametrize("text", ["system: {rootpath: /gg}\n", "- a\n"])
def test_what_cannot_be_edited_in_place_is_refused(text: str) -> None:
    with pytest.raises(YamlCutError):
        set_values(text.encode(), {("system", "thingName"): "T"})
