"""Removing keys from effectiveConfig.yaml changes nothing but the removed keys (issue 7, point 1).

Each edit is judged by PyYAML parsing the text before and after: the tree after must equal the
tree before minus exactly the keys reported removed, over documents in the styles Jackson's
YAMLMapper (SnakeYAML's emitter) writes: block and flow collections, quoted keys holding ':' and
'/', literal, folded and escaped multi-line scalars, sequences of mappings."""

from __future__ import annotations

from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from composer.rules.yamlcut import Path, cut, prune

KEY_CHARS = st.sampled_from(list("abcAB_-./:# '\"0123456789é"))
keys = st.text(KEY_CHARS, min_size=1, max_size=12)
scalars = st.one_of(
    st.text(st.sampled_from(list("ab :#-\"'\\/\n\t{}[],é")), max_size=40),
    st.integers(-10**6, 10**6), st.booleans(), st.none())
trees = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=3),
                            st.dictionaries(keys, inner, max_size=4)),
    max_leaves=25)
documents = st.dictionaries(keys, trees, min_size=1, max_size=5)


class JacksonLikeDumper(yaml.SafeDumper):
    """Strings in the style a test picks: Jackson quotes every string by default and writes
    multi-line ones as literal blocks with LITERAL_BLOCK_STYLE; SnakeYAML folds long ones."""

    string_style: str | None = None
    multiline_style: str | None = None


def _represent_str(dumper: JacksonLikeDumper, value: str) -> yaml.ScalarNode:
    style = dumper.multiline_style if "\n" in value else dumper.string_style
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


JacksonLikeDumper.add_representer(str, _represent_str)


@st.composite
def emitted(draw: st.DrawFn) -> tuple[str, Any]:
    tree = draw(documents)

    class Dumper(JacksonLikeDumper):
        pass

    Dumper.string_style = draw(st.sampled_from([None, '"', "'"]))
    Dumper.multiline_style = draw(st.sampled_from([None, '"', "|", ">"]))
    text = yaml.dump(tree, Dumper=Dumper, allow_unicode=draw(st.booleans()),
                     default_flow_style=draw(st.sampled_from([False, True, None])),
                     width=draw(st.sampled_from([12, 40, 80])),
                     explicit_start=draw(st.booleans()), sort_keys=draw(st.booleans()))
    return text, tree


def _key_paths(tree: Any, path: Path = ()) -> list[Path]:
    found: list[Path] = []
    if isinstance(tree, dict):
        for k, v in tree.items():
            found.append((*path, str(k)))
            found += _key_paths(v, (*path, str(k)))
    elif isinstance(tree, list):
        for i, v in enumerate(tree):
            found += _key_paths(v, (*path, str(i)))
    return found


def _check(text: str, doomed_lower: set[Path]) -> list[Path]:
    before = yaml.safe_load(text)
    out, removed = cut(text.encode(), lambda p: p in doomed_lower)
    after = yaml.safe_load(out.decode())
    assert after == prune(before, removed)
    # exactly the doomed keys that exist, except those inside a removed key
    present = [p for p in _key_paths(before) if tuple(s.lower() for s in p) in doomed_lower]
    expected = [p for p in present
                if not any(p[:len(q)] == q and p != q for q in present)]
    assert sorted(removed) == sorted(expected)
    if not removed:
        assert out == text.encode()
    return removed


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(emitted(), st.data())
def test_cut_removes_exactly_the_keys_and_nothing_else(doc: tuple[str, Any],
                                                     data: st.DataObject) -> None:
    text, tree = doc
    paths = _key_paths(tree)
    chosen = data.draw(st.lists(st.sampled_from(paths), max_size=4)) if paths else []
    _check(text, {tuple(s.lower() for s in p) for p in chosen})


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(emitted())
def test_every_single_key_can_be_cut_alone(doc: tuple[str, Any]) -> None:
    text, tree = doc
    for path in _key_paths(tree):
        _check(text, {tuple(s.lower() for s in path)})


# The two regressions the issue reports, in the shape the nucleus writes effectiveConfig.yaml
JACKSON = """---
services:
  DeploymentService:
    GroupToLastDeployment:
      thing/GoldenThing-7f3a91:
        configurationArn: "arn:aws:greengrass:us-east-1:1:configuration:thing/GoldenThing-7f3a91:3"
        timestamp: 1718878001465
      thinggroup/Fleet:
        configurationArn: "arn:aws:greengrass:us-east-1:1111:configuration:thinggroup/Fleet:5"
        timestamp: 1718878001466
    runtime:
      ProcessedDeployments:
        "1718878001467":
          DeploymentId: "3f2c8d4e"
          DeploymentStatus: "SUCCEEDED"
  FleetStatusService:
    sequenceNumber: 4
  aws.greengrass.Nucleus:
    configuration:
      logging:
        format: "TEXT"
      policy: >
        folded text that
        spans lines
system:
  thingName: "GoldenThing-7f3a91"
"""


def test_thing_group_key_after_the_removed_one_stays() -> None:
    removed = _check(JACKSON, {("services", "deploymentservice", "grouptolastdeployment",
                                "thing/goldenthing-7f3a91")})
    assert removed == [("services", "DeploymentService", "GroupToLastDeployment",
                        "thing/GoldenThing-7f3a91")]
    out = cut(JACKSON.encode(), lambda p: p[-1] == "thing/goldenthing-7f3a91")[0].decode()
    assert "      thinggroup/Fleet:\n" in out
    group = yaml.safe_load(out)["services"]["DeploymentService"]["GroupToLastDeployment"]
    assert list(group) == ["thinggroup/Fleet"]


def test_service_after_processed_deployments_stays() -> None:
    _check(JACKSON, {("services", "deploymentservice", "runtime", "processeddeployments")})
    out = cut(JACKSON.encode(), lambda p: p[-1] == "processeddeployments")[0].decode()
    services = yaml.safe_load(out)["services"]
    assert services["FleetStatusService"] == {"sequenceNumber": 4}
    assert services["DeploymentService"]["runtime"] == {}  # still a mapping, not null
