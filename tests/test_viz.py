"""Pictures: files are produced and valid (PNG opens with Pillow and is not blank; SVG parses
as XML and names every layer), the numbers drawn are the model's, and bad input is one line."""
from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET

import numpy as np
import pytest
from PIL import Image

import convscope as cs
from convscope import ConvscopeError
from convscope.cli import main
from convscope.layers import (AdaptiveAvgPool2d, BatchNorm2d, Conv2d, Flatten, Linear, MaxPool2d, ReLU)
from convscope.train import preprocessing
from convscope.train.checkpoint import save_checkpoint
from convscope.viz.featuremaps import activation

SVG = "{http://www.w3.org/2000/svg}"


def branchy():
    """A small net with a concat (GoogLeNet-style) and residual blocks with and without a
    projection shortcut (ResNet-style)."""
    return cs.Sequential([
        Conv2d(8, 3, padding=1), ReLU(),
        cs.Concat([[Conv2d(4, 1), ReLU()], [Conv2d(2, 1), ReLU(), Conv2d(4, 3, padding=1), ReLU()],
                   [MaxPool2d(3, stride=1, padding=1), Conv2d(2, 1)]]),
        cs.Residual([Conv2d(10, 3, padding=1, bias=False), BatchNorm2d(), ReLU(),
                     Conv2d(10, 3, padding=1, bias=False), BatchNorm2d()]), ReLU(),
        cs.Residual([Conv2d(16, 3, stride=2, padding=1), BatchNorm2d()],
                    [Conv2d(16, 1, stride=2), BatchNorm2d()]), ReLU(),
        AdaptiveAvgPool2d(1), Flatten(), Linear(10)])


def svg_words(text: str):
    root = ET.fromstring(text.encode("utf-8"))  # raises if the SVG is not well-formed XML
    shown = " ".join("".join(el.itertext()) for el in root.iter(f"{SVG}text"))
    return root, set(re.split(r"[\s,]+", shown))


def assert_png_not_blank(path):
    with Image.open(path) as image:
        image.load()
        pixels = np.asarray(image.convert("L"), dtype=float)
    assert pixels.shape[0] > 50 and pixels.shape[1] > 50
    assert pixels.std() > 5  # more than a flat background
    return pixels.shape


@pytest.mark.parametrize("detail", ["layers", "stages"])
def test_svg_names_every_layer(detail):
    model = branchy()
    svg = cs.viz.architecture_svg(model, (3, 8, 8), detail=detail, name="branchy")
    root, words = svg_words(svg)
    names = [row.name for row in cs.analyze(model, (3, 8, 8)).layers]
    assert len(names) == 27
    missing = [n for n in names if n not in words]
    assert not missing
    boxes = root.findall(f".//{SVG}rect")
    # layers mode: 27 layer/join boxes + input + background + 7 legend swatches = 36;
    # stages mode folds the 11 relu/batchnorm boxes into the box above them: 25.
    assert len(boxes) == (36 if detail == "layers" else 25)
    assert "2  concat → 10×8×8" in svg and "3  add (+) → 10×8×8" in svg
    assert "branchy: 3×8×8 → 10" in svg  # the title


def test_residual_and_concat_branches_sit_side_by_side():
    diagram = cs.viz.diagram.layout(branchy(), (3, 8, 8), detail="layers")
    box = {n: b for b in diagram.boxes for n in b.names}
    # Concat branches start at the same height, at different x; the join is below all of them.
    tops = [box[f"2.branches.{i}.0"] for i in range(3)]
    assert len({b.y for b in tops}) == 1 and len({b.x for b in tops}) == 3
    assert box["2"].y > max(box["2.branches.1.3"].y, box["2.branches.2.1"].y)
    # A projection shortcut is drawn beside the body, joined by the add box below both.
    assert box["5.shortcut.0"].y == box["5.body.0"].y and box["5.shortcut.0"].x > box["5.body.0"].x
    assert box["5"].y > box["5.body.1"].y


def test_png_architecture_from_the_command_line(tmp_path, capsys):
    out = tmp_path / "net.png"
    assert main(["show", "architecture", "conv2d(8, 3) -> relu -> maxpool2d(2) -> flatten -> linear(10)",
                 "--input", "1x12x12", "-o", str(out)]) == 0
    assert_png_not_blank(out)
    svg = tmp_path / "net.svg"
    assert main(["show", "architecture", "conv2d(8, 3) -> relu -> flatten -> linear(10)", "--input", "1x8x8",
                 "-o", str(svg)]) == 0
    _, words = svg_words(svg.read_text(encoding="utf-8"))
    assert {"0", "1", "2", "3", "conv2d(8", "linear(10)"} <= words


def test_deep_branchy_net_png_is_legible_size(tmp_path):
    # Four residual stages: auto detail folds activations (stages); the PNG stays a sane size.
    layers = [Conv2d(8, 3, padding=1)]
    for _ in range(12):
        layers += [cs.Residual([Conv2d(8, 3, padding=1), BatchNorm2d(), ReLU(), Conv2d(8, 3, padding=1),
                                BatchNorm2d()]), ReLU()]
    model = cs.Sequential(layers + [Flatten(), Linear(3)])
    path = cs.viz.save_architecture(model, (1, 6, 6), tmp_path / "deep.png", name="deep")
    height, width = assert_png_not_blank(path)
    assert width < 1200 and height < 6000


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A checkpoint of a small digits-shaped CNN, a history.json and two image files."""
    folder = tmp_path_factory.mktemp("run")
    model = cs.Sequential([Conv2d(6, 3, padding=1), ReLU(), MaxPool2d(2), Conv2d(4, 3, padding=1), ReLU(),
                           Flatten(), Linear(10)])
    model.build((1, 8, 8), seed=0)
    prep = preprocessing.make(1, (8, 8), (0, 16), invert=False)
    save_checkpoint(folder / "model.npz", model, preprocessing=prep, class_names=[str(i) for i in range(10)])
    dense = cs.Sequential([Flatten(), Linear(3)]).build((1, 8, 8), seed=0)
    save_checkpoint(folder / "dense.npz", dense, preprocessing=prep)
    history = [{"epoch": e, "train_loss": 2.0 / e, "train_accuracy": 1 - 0.5 / e, "val_loss": 2.2 / e,
                "val_accuracy": 1 - 0.6 / e, "seconds": 0.1} for e in range(1, 6)]
    (folder / "history.json").write_text(json.dumps(history))
    canvas = np.zeros((32, 32), dtype=np.uint8)
    canvas[6:26, 14:18] = 255  # a "1"
    Image.fromarray(canvas).save(folder / "digit.png")
    (folder / "broken.png").write_text("not an image")
    return folder


def test_filters_first_conv_with_symmetric_scale(run_dir, tmp_path):
    checkpoint = cs.train.checkpoint.load_checkpoint(run_dir / "model.npz")
    fig = cs.viz.filters(checkpoint)
    image = fig.axes[0].images[0]
    weight = dict(checkpoint.model.named_parameters())["0.weight"].value
    m = float(np.abs(weight).max())
    assert image.get_clim() == pytest.approx((-m, m))  # shared symmetric scale ±max|w|
    assert len(fig.axes) == 2  # the grid and its colour bar
    assert "filters of layer 0 (conv2d), weight 6×1×3×3" in fig.axes[0].get_title()
    # 6 one-channel 3×3 kernels in a 3-column grid: 2 rows × 3 columns with 1-pixel gaps.
    assert image.get_array().shape == (2 * 4 - 1, 3 * 4 - 1)
    out = tmp_path / "filters.png"
    assert main(["show", "filters", str(run_dir / "model.npz"), "-o", str(out)]) == 0
    assert_png_not_blank(out)


def test_filters_of_a_deeper_layer_show_channel_slices(run_dir):
    checkpoint = cs.train.checkpoint.load_checkpoint(run_dir / "model.npz")
    fig = cs.viz.filters(checkpoint, "3")
    ax = fig.axes[0]
    # weight 4×6×3×3: rows = 4 output channels, columns = 6 input channels.
    assert ax.images[0].get_array().shape == (4 * 4 - 1, 6 * 4 - 1)
    assert ax.get_xlabel().startswith("input channel") and ax.get_ylabel() == "output channel (filter)"


def test_featuremaps_show_the_layers_activation(run_dir, tmp_path):
    checkpoint = cs.train.checkpoint.load_checkpoint(run_dir / "model.npz")
    x = preprocessing.load_images([run_dir / "digit.png"], checkpoint.preprocessing)
    model = checkpoint.model
    expected = model[1].forward(model[0].forward(x))  # layer 1 (relu) by hand
    np.testing.assert_allclose(activation(model, x, "1"), expected, rtol=0, atol=0)
    fig = cs.viz.featuremaps(checkpoint, run_dir / "digit.png", "1")
    assert "layer 1 (relu) output 6×8×8" in fig.subfigs[1]._suptitle.get_text()
    drawn = [ax.images[0].get_array() for ax in fig.subfigs[1].axes if ax.images]
    np.testing.assert_allclose(np.asarray(drawn[0]), expected[0, 0], rtol=1e-6)
    out = tmp_path / "maps.png"
    assert main(["show", "featuremaps", str(run_dir / "model.npz"), str(run_dir / "digit.png"),
                 "--layer", "3", "-o", str(out)]) == 0
    assert_png_not_blank(out)


def test_curves_from_history(run_dir, tmp_path):
    fig = cs.viz.curves(run_dir)
    loss, accuracy = fig.axes[:2]
    assert loss.get_ylabel() == "loss" and accuracy.get_xlabel() == "epoch"
    train, val = loss.get_lines()
    assert list(train.get_ydata()) == [2.0 / e for e in range(1, 6)]
    assert list(val.get_ydata()) == [2.2 / e for e in range(1, 6)]
    assert "best validation accuracy 0.88 at epoch 5" in fig._suptitle.get_text()
    out = tmp_path / "curves.png"
    assert main(["show", "curves", str(run_dir), "-o", str(out)]) == 0
    assert_png_not_blank(out)


@pytest.mark.parametrize("argv, phrase", [
    (["filters", "{run}/model.npz", "--layer", "9"], "unknown layer '9'; valid layers for filters: 0 (conv2d), 3 (conv2d)"),
    (["filters", "{run}/model.npz", "--layer", "1"], "layer 1 is relu, which has no filters"),
    (["filters", "{run}/dense.npz"], "has no conv1d or conv2d layer"),
    (["featuremaps", "{run}/model.npz", "{run}/broken.png"], "is not a readable image"),
    (["featuremaps", "{run}/model.npz", "{run}/digit.png", "--layer", "6"], "layer 6 is linear"),
    (["featuremaps", "{run}/model.npz", "{run}/missing.png"], "image not found"),
    (["curves", "{run}/nowhere"], "does not exist"),
    (["architecture", "conv2d(8, 3) -> flatten -> linear(10)"], "add --input"),
])
def test_bad_input_is_one_line(run_dir, tmp_path, capsys, argv, phrase):
    argv = [a.replace("{run}", str(run_dir)) for a in argv]
    assert main(["show"] + argv + ["-o", str(tmp_path / "out.png")]) == 2
    err = capsys.readouterr().err
    assert phrase in err, err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert not (tmp_path / "out.png").exists()
