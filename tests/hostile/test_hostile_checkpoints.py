"""Damaged and edited checkpoints: one line and exit 2 (or a correct answer), never a
traceback, never a large allocation, never a changed file. Oracle for the byte corruptions: the
zip CRC-32 of every member makes any change to stored data detectable, so a corrupted file must
be refused or (a change outside the data, e.g. in a timestamp) give exactly the original answer."""
from __future__ import annotations

import json
import random

import numpy as np
import pytest

from convscope.cli import main
from convscope.train.checkpoint import META_KEY

from conftest import fails, one_line, write_ckpt

N_CORRUPTIONS = 60


@pytest.fixture(scope="module")
def reference(good_ckpt, tmp_path_factory):
    """predict's JSON for the undamaged checkpoint on a fixed image."""
    from PIL import Image

    folder = tmp_path_factory.mktemp("reference")
    image = folder / "digit.png"
    Image.fromarray(np.tile(np.arange(28, dtype=np.uint8) * 9, (28, 1))).save(image)
    (folder / "model.npz").write_bytes(good_ckpt[0])
    return image


@pytest.mark.parametrize("seed", range(N_CORRUPTIONS))
def test_single_byte_corruption(tmp_path, capsys, good_ckpt, reference, seed):
    rng = random.Random(seed)
    data = bytearray(good_ckpt[0])
    position = rng.randrange(len(data))
    data[position] = (data[position] + rng.randrange(1, 256)) % 256
    path = tmp_path / "model.npz"
    path.write_bytes(bytes(data))
    before = path.read_bytes()
    rc = main(["predict", str(path), str(reference), "--format", "json"])
    out, err = capsys.readouterr()
    if rc == 0:  # the byte was outside any stored data (a timestamp, an unused header field)
        assert err == ""
        clean = tmp_path / "clean.npz"
        clean.write_bytes(good_ckpt[0])
        assert main(["predict", str(clean), str(reference), "--format", "json"]) == 0
        expected = capsys.readouterr().out
        assert json.loads(out)[0]["probability"] == pytest.approx(json.loads(expected)[0]["probability"])
    else:
        one_line(rc, err)
    assert path.read_bytes() == before


@pytest.mark.parametrize("cut", [0, 1, 4, 30, 100, 500, -200, -22, -1])
def test_truncated_checkpoint(tmp_path, capsys, good_ckpt, cut):
    path = tmp_path / "model.npz"
    path.write_bytes(good_ckpt[0][:cut] if cut else b"")
    fails(capsys, tmp_path, "summary", path)


def nested(depth):
    value = []
    for _ in range(depth):
        value = [value]
    return value


DESCRIPTION_EDITS = [
    ({"preprocessing": "SIZE30000"}, "limits.MAX_IMAGE_SIDE"),
    ({"preprocessing": "RANGE_AB"}, "range must be two finite numbers"),
    ({"preprocessing": "RANGE_3"}, "range must be two finite numbers"),
    ({"preprocessing": "MEAN_NAN"}, "mean must be finite"),
    ({"preprocessing": "STD_INF"}, "std must be finite"),
    ({"preprocessing": "STD_BIG"}, "std must be finite"),
    ({"preprocessing": "CHANNELS_TRUE"}, "channels must be 1"),
    ({"preprocessing": "INVERT_1"}, "invert must be"),
    ({"class_names": ["x" * 5000] * 10}, "limits.MAX_NAME_CHARS"),
    ({"class_names": [str(i) for i in range(100_001)]}, "limits.MAX_CLASSES"),
    ({"class_names": [[1]] * 10}, "class_names must be strings"),
    ({"input_shape": [1, 8, 8, 8, 8]}, "input_shape must be 1 to 3"),
    ({"input_shape": [1, -8, 8]}, "input_shape must be 1 to 3"),
    ({"input_shape": [1, 8.5, 8]}, "input_shape must be 1 to 3"),
    ({"input_shape": [True, 8, 8]}, "input_shape must be 1 to 3"),
    ({"input_shape": []}, "input_shape must be 1 to 3"),
    ({"epoch": -1}, "epoch must be from 0"),
    ({"epoch": 10 ** 30}, "epoch must be from 0"),
    ({"epoch": 1.5}, "'epoch' must be an integer"),
    ({"dtype": "complex128"}, "dtype must be 'float32' or 'float64'"),
    ({"dtype": None}, "dtype must be"),
    ({"spec": None}, "'spec' must be an object"),
    ({"spec": {"layers": nested(200)}}, "limits.MAX_SPEC_DEPTH"),
    ({"spec": {"layers": [{"type": "relu"}] * 10_001}}, "limits.MAX_LAYERS"),
    ({"training": {"deep": nested(500)}}, "limits.MAX_SPEC_DEPTH"),
    ({"format": "something-else"}, "not a convscope checkpoint"),
    ({"version": 2}, "upgrade convscope"),
    ({"version": 1.0}, "version must be an integer"),
    ({"rng": [1]}, "'rng' must be an object"),
]


def _prep(meta, how):
    prep = dict(meta["preprocessing"])
    if how == "SIZE30000":
        prep["size"] = [30000, 30000]
    elif how == "RANGE_AB":
        prep["range"] = ["a", "b"]
    elif how == "RANGE_3":
        prep["range"] = [0, 1, 2]
    elif how == "MEAN_NAN":
        prep["mean"] = [float("nan")]
    elif how == "STD_INF":
        prep["std"] = [float("inf")]
    elif how == "STD_BIG":
        prep["std"] = [10 ** 400]
    elif how == "CHANNELS_TRUE":
        prep["channels"] = True
    elif how == "INVERT_1":
        prep["invert"] = 1
    return prep


@pytest.mark.parametrize("change, words", DESCRIPTION_EDITS, ids=[str(i) for i in range(len(DESCRIPTION_EDITS))])
@pytest.mark.parametrize("command", ["summary", "predict", "export", "show"])
def test_edited_description(tmp_path, capsys, good_ckpt, png, change, words, command):
    arrays, meta = good_ckpt[1], good_ckpt[2]
    change = {k: _prep(meta, v) if k == "preprocessing" else v for k, v in change.items()}
    path = write_ckpt(tmp_path / "bad.npz", arrays, meta, **change)
    argv = {"summary": ["summary", path], "predict": ["predict", path, png],
            "export": ["export", path, "-o", tmp_path / "net.onnx"],
            "show": ["show", "filters", path, "-o", tmp_path / "f.png"]}[command]
    assert words in fails(capsys, tmp_path, *argv)


def test_description_nested_200000_deep(tmp_path, capsys, good_ckpt, png):
    arrays = dict(good_ckpt[1])
    arrays[META_KEY] = np.array('{"format": "convscope-checkpoint", "x": ' + "[" * 200_000 + "]" * 200_000 + "}")
    np.savez(tmp_path / "deep.npz", **arrays)
    for argv in (["summary", tmp_path / "deep.npz"], ["predict", tmp_path / "deep.npz", png]):
        assert "limits.MAX_SPEC_DEPTH" in fails(capsys, tmp_path, *argv)


def test_spec_nested_3000_deep_inside_a_checkpoint(tmp_path, capsys, good_ckpt, png):
    arrays = dict(good_ckpt[1])
    deep = '{"type": "sequential", "layers": [' * 3000 + '{"type": "relu"}' + "]}" * 3000
    text = json.dumps(good_ckpt[2]).replace('"layers": [', '"layers": [' + deep + ", ", 1)
    arrays[META_KEY] = np.array(text)
    np.savez(tmp_path / "deep.npz", **arrays)
    for argv in (["summary", tmp_path / "deep.npz"], ["predict", tmp_path / "deep.npz", png],
                 ["export", tmp_path / "deep.npz", "-o", tmp_path / "net.onnx"]):
        assert "limits.MAX_SPEC_DEPTH" in fails(capsys, tmp_path, *argv)


def test_description_with_a_5000_digit_integer(tmp_path, capsys, good_ckpt, png):
    arrays = dict(good_ckpt[1])
    text = json.dumps(good_ckpt[2]).replace('"epoch": null', '"epoch": ' + "9" * 5000)
    arrays[META_KEY] = np.array(text)
    np.savez(tmp_path / "digits.npz", **arrays)
    assert "thousands of digits" in fails(capsys, tmp_path, "predict", tmp_path / "digits.npz", png)


WEIGHT_EDITS = [
    (lambda w: w.astype(np.complex64) + 1j, "complex"),
    (lambda w: w.astype(np.int8), "int8"),
    (lambda w: w.astype(np.int64), "int64"),
    (lambda w: w > 0, "bool"),
    (lambda w: w.astype("U3"), "<U3"),
    (lambda w: np.full_like(w, np.nan), "NaN or infinite"),
    (lambda w: np.full_like(w, np.inf), "NaN or infinite"),
    (lambda w: np.concatenate([[-np.inf], w.ravel()[1:]]).reshape(w.shape).astype(w.dtype), "NaN or infinite"),
    (lambda w: np.array([object()] * w.size, dtype=object), "pickled"),
    (lambda w: w[:1], "has shape|holds only"),
    (lambda w: w[None], "has shape"),
]


@pytest.mark.parametrize("edit, words", WEIGHT_EDITS, ids=[w for _, w in WEIGHT_EDITS])
@pytest.mark.parametrize("name", ["0.weight", "0.bias", "3.weight"])
def test_edited_weights(tmp_path, capsys, good_ckpt, png, edit, words, name):
    arrays = dict(good_ckpt[1])
    arrays[name] = edit(arrays[name])
    np.savez(tmp_path / "w.npz", **arrays)
    line = fails(capsys, tmp_path, "evaluate", tmp_path / "w.npz", "--data", "digits", "--format", "json")
    assert any(word in line for word in words.split("|")), line


@pytest.mark.parametrize("content, words", [
    (b"this is not a zip", "not an .npz archive"),
    (b"0123456789abcdef", "not an .npz archive"),
    (b"", "an empty file"),
    (b"\x93NUMPY\x01\x00", "not an .npz archive"),
    (b"PK\x05\x06" + b"\x00" * 18, "not an .npz archive"),
])
def test_files_that_are_not_npz(tmp_path, capsys, content, words):
    # A 16-byte text file named .npz was reported as "holds pickled objects".
    path = tmp_path / "model.npz"
    path.write_bytes(content)
    assert words in fails(capsys, tmp_path, "summary", path)


@pytest.mark.parametrize("shape, descr", [((1 << 29,), "<f4"), ((1 << 20, 1 << 20, 3, 3), "<f8"),
                                          ((65536,) * 4, "<f4"), ((1 << 40,), "|u1")])
def test_npy_header_declaring_gigabytes_is_refused_before_reading(tmp_path, capsys, good_ckpt, shape, descr):
    # A member whose .npy header promises gigabytes (and holds 16 bytes): refused from the header.
    import zipfile

    path = tmp_path / "bomb.npz"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(META_KEY + ".npy", _npy(np.array(json.dumps(good_ckpt[2]))))
        archive.writestr("0.weight.npy", _npy_header(shape, descr) + b"\x00" * 16)
    assert "limits.MAX_DECODED_BYTES" in fails(capsys, tmp_path, "summary", path)


def test_encrypted_flag_is_one_line(tmp_path, capsys, good_ckpt):
    data = bytearray(good_ckpt[0])
    data[6] |= 1  # general-purpose flag bit 0 of the first local header: "encrypted"
    central = data.rfind(b"PK\x01\x02")
    data[central + 8] |= 1
    (tmp_path / "enc.npz").write_bytes(bytes(data))
    fails(capsys, tmp_path, "summary", tmp_path / "enc.npz")


def _npy_header(shape, descr) -> bytes:
    import io

    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, {"descr": descr, "fortran_order": False, "shape": shape})
    return buffer.getvalue()


def _npy(array) -> bytes:
    import io

    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()
