"""docs/spec.md is generated from the layer registry (issue 15 point 5) and cannot drift:
the committed file must equal `python -m convscope.spec.docs`; every registered type and every
constructor key is in it; every YAML example parses, builds and analyses."""
import inspect
import os
import re

import numpy as np
import pytest
import yaml

import convscope as cs
from convscope import ConvscopeError
from convscope.layers.registry import LAYER_TYPES
from convscope.spec.docs import render

DOC = os.path.join(os.path.dirname(__file__), os.pardir, "docs", "spec.md")


@pytest.fixture(scope="module")
def text():
    return render()


def test_committed_file_equals_the_generated_one(text):
    with open(DOC, encoding="utf-8") as handle:
        committed = handle.read()
    assert committed == text, "docs/spec.md is stale: run `python -m convscope.spec.docs > docs/spec.md`"


def test_every_type_and_key_is_documented(text):
    for name, cls in LAYER_TYPES.items():
        section = text.split(f"### `{name}`\n", 1)
        assert len(section) == 2, name
        body = section[1].split("\n### ", 1)[0].split("\n## ", 1)[0]
        for key, parameter in list(inspect.signature(cls.__init__).parameters.items())[1:]:
            row = re.search(rf"^\| `{key}` \| ([^|]+) \|", body, re.M)
            assert row, (name, key)
            if parameter.default is inspect.Parameter.empty:
                assert row.group(1).strip() == "required", (name, key)
    # conv2d's defaults are PyTorch's: stride 1, padding 0, dilation 1, groups 1, bias true
    conv = text.split("### `conv2d`\n", 1)[1]
    for key, default in (("stride", "`1`"), ("padding", "`0`"), ("dilation", "`1`"), ("groups", "`1`"),
                         ("bias", "`true`")):
        assert f"| `{key}` | {default} |" in conv


def test_one_yaml_example_per_family_that_builds(text):
    families = {getattr(cls, "family", "other") for cls in LAYER_TYPES.values()}
    blocks = re.findall(r"^Example \((\w+) family, `(\w+)`\):\n\n```yaml\n(.*?)\n```", text, re.M | re.S)
    assert sorted(f for f, _, _ in blocks) == sorted(families)
    for family, name, block in blocks:
        document = yaml.safe_load(block)
        model = cs.from_spec(document)
        shape = tuple(document["input"])
        report = cs.analyze(model, shape)
        assert report.output  # analysis runs on it
        model.build(shape, seed=0, dtype=np.float64)
        y = model.forward(np.zeros((2,) + shape), train=False)
        assert y.shape[0] == 2 and name in block


def test_unknown_key_lists_the_valid_ones_and_keeps_the_hint():
    with pytest.raises(ConvscopeError) as info:
        cs.from_spec({"layers": [{"type": "maxpool2d", "kernel_size": 2, "strid": 2}]})
    message = str(info.value)
    assert message == ("layers[0]: unknown key 'strid' (did you mean 'stride'?); valid keys: kernel_size, "
                       "stride, padding, dilation, ceil_mode (see docs/spec.md)")
