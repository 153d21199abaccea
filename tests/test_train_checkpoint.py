"""Checkpoints (bit-exact round trip, atomic writes, clear errors on non-checkpoints) and the
preprocessing that maps a user's image to model input."""
import json
import os

import numpy as np
import pytest
from PIL import Image

import convscope as cs
from convscope import ConvscopeError
from convscope.train import checkpoint as C
from convscope.train import preprocessing as P
from convscope.train.optim import SGD

DIGITS_PREP = P.make(1, (8, 8), (0, 16), invert="auto", crop="ink")


def _model(dtype=np.float32, seed=3):
    model = cs.parse_text("conv2d(4, 3, padding=1) -> relu -> dropout(0.25) -> maxpool2d(2) -> flatten "
                          "-> linear(10)")
    return model.build((1, 8, 8), seed=seed, dtype=dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_round_trip_is_bit_exact(tmp_path, dtype):
    model = _model(dtype)
    path = C.save_checkpoint(tmp_path / "m.npz", model, preprocessing=DIGITS_PREP,
                             class_names=list("0123456789"), epoch=4)
    ck = C.load_checkpoint(path)
    assert ck.model.built and ck.input_shape == (1, 8, 8) and ck.epoch == 4
    assert ck.class_names == list("0123456789") and ck.preprocessing == DIGITS_PREP
    assert ck.spec == model.spec()
    original, loaded = model.state_dict(), ck.model.state_dict()
    assert list(original) == list(loaded) == ["0.weight", "0.bias", "5.weight", "5.bias"]
    for name in original:
        assert loaded[name].dtype == np.dtype(dtype)
        np.testing.assert_array_equal(loaded[name], original[name])
    x = np.random.default_rng(0).standard_normal((3, 1, 8, 8)).astype(dtype)
    # Dropout's generator state travels too, so even training-mode outputs agree.
    np.testing.assert_array_equal(ck.model.forward(x, train=True), model.forward(x, train=True))


def test_optimizer_state_is_saved(tmp_path):
    model = _model()
    opt = SGD(model.parameters(), lr=0.1, momentum=0.9)
    for p in model.parameters():
        p.grad[...] = 1.0
    opt.step()
    ck = C.load_checkpoint(C.save_checkpoint(tmp_path / "last.npz", model, optimizer=opt, epoch=1))
    saved = ck.optimizer_state
    assert saved["type"] == "sgd" and saved["steps"] == 1
    np.testing.assert_array_equal(saved["arrays"]["0.weight:momentum_buffer"],
                                  opt.state["0.weight"]["momentum_buffer"])


def test_no_pickle_inside(tmp_path):
    path = C.save_checkpoint(tmp_path / "m.npz", _model(), preprocessing=DIGITS_PREP)
    with np.load(path, allow_pickle=False) as archive:
        for key in archive.files:
            assert archive[key].dtype != object
        meta = json.loads(str(archive[C.META_KEY]))
    assert meta["format"] == "convscope-checkpoint" and meta["input_shape"] == [1, 8, 8]


def test_failed_write_leaves_the_old_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "m.npz"
    C.save_checkpoint(path, _model(seed=1))
    before = path.read_bytes()

    def explode(*args, **kwargs):
        raise OSError("disk full (simulated)")

    monkeypatch.setattr(np, "savez", explode)
    with pytest.raises(OSError, match="simulated"):
        C.save_checkpoint(path, _model(seed=2))
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["m.npz"]  # the temporary file was removed


def test_interrupted_write_after_partial_output_leaves_the_old_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "m.npz"
    C.save_checkpoint(path, _model(seed=1))
    before = path.read_bytes()
    real = np.savez

    def half(file, **arrays):
        real(file, **arrays)
        raise KeyboardInterrupt  # killed after writing, before the rename

    monkeypatch.setattr(np, "savez", half)
    with pytest.raises(KeyboardInterrupt):
        C.save_checkpoint(path, _model(seed=2))
    assert path.read_bytes() == before and os.listdir(tmp_path) == ["m.npz"]


@pytest.mark.parametrize("content,message", [
    (b"hello, not a checkpoint", "not an .npz archive"),
    (b"", "an empty file"),
])
def test_not_a_checkpoint(tmp_path, content, message):
    path = tmp_path / "x.npz"
    path.write_bytes(content)
    with pytest.raises(ConvscopeError, match=message):
        C.load_checkpoint(path)


def test_truncated_and_foreign_npz(tmp_path):
    good = C.save_checkpoint(tmp_path / "m.npz", _model())
    cut = tmp_path / "cut.npz"
    cut.write_bytes(open(good, "rb").read()[:700])
    with pytest.raises(ConvscopeError, match="truncated"):
        C.load_checkpoint(cut)
    np.savez(tmp_path / "other.npz", a=np.zeros(3))
    with pytest.raises(ConvscopeError, match="not a convscope checkpoint"):
        C.load_checkpoint(tmp_path / "other.npz")
    with pytest.raises(ConvscopeError, match="checkpoint not found"):
        C.load_checkpoint(tmp_path / "missing.npz")


# ----- preprocessing --------------------------------------------------------------------------
def _digit_image(raw8x8: np.ndarray, scale=8, dark_on_light=True, rgb=True) -> Image.Image:
    """An 8×8 digit (0-16) drawn large, as a person would: dark ink on white, in colour."""
    pixels = np.kron(raw8x8, np.ones((scale, scale))) * 255.0 / 16.0
    if dark_on_light:
        pixels = 255.0 - pixels
    image = Image.fromarray(np.round(pixels).astype(np.uint8), "L")
    return image.convert("RGB") if rgb else image


def test_upscaled_inverted_colour_digit_returns_to_the_data_set_values():
    digit = cs.train.load_data("digits").test.x[0, 0]
    plain = dict(DIGITS_PREP, crop="none")
    raw = P.image_to_raw(_digit_image(digit), plain)
    assert raw.shape == (1, 8, 8)
    # Box-averaging 8×8 equal pixels gives each back; 8-bit rounding costs ≤ 0.5·16/255.
    np.testing.assert_allclose(raw[0], digit, atol=0.5 * 16 / 255 + 1e-5)
    light_on_dark = P.image_to_raw(_digit_image(digit, dark_on_light=False, rgb=False), plain)
    np.testing.assert_allclose(light_on_dark, raw, atol=1e-5)  # "auto" inverts only light backgrounds


def test_ink_crop_ignores_margins():
    digit = cs.train.load_data("digits").test.x[5, 0]
    image = _digit_image(digit, rgb=False)
    canvas = Image.new("L", (200, 150), 255)
    canvas.paste(image, (17, 40))
    np.testing.assert_allclose(P.image_to_raw(canvas, DIGITS_PREP), P.image_to_raw(image, DIGITS_PREP),
                               atol=1e-5)


def test_transparent_png_background_is_paper(tmp_path):
    rgba = np.zeros((16, 16, 4), np.uint8)  # fully transparent ...
    rgba[4:12, 6:8] = (0, 0, 0, 255)          # ... except an opaque black stroke (column 3 of 8)
    Image.fromarray(rgba, "RGBA").save(tmp_path / "t.png")
    x = P.load_images([tmp_path / "t.png"], dict(DIGITS_PREP, crop="none"))
    assert x.shape == (1, 1, 8, 8)
    assert x[0, 0, 0, 0] == 0 and x[0, 0, 4, 3] > 0.9  # background 0, the stroke is ink near 1 (16/16)


def test_normalize_and_bad_images(tmp_path):
    prep = P.make(3, (2, 2), (0, 255), invert=False, mean=[0, 10, 20], std=[1, 2, 4])
    x = np.full((1, 3, 2, 2), 30.0)
    np.testing.assert_array_equal(P.normalize(x, prep)[0, :, 0, 0], [30.0, 10.0, 2.5])
    (tmp_path / "bad.png").write_text("not an image")
    with pytest.raises(ConvscopeError, match="not a readable image"):
        P.load_images([tmp_path / "bad.png"], prep)
    with pytest.raises(ConvscopeError, match="image not found"):
        P.load_images([tmp_path / "none.png"], prep)
    with pytest.raises(ConvscopeError, match="channels must be 1"):
        P.make(2, (2, 2))
