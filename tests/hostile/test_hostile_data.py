"""Hostile data files and images: sizes declared in headers are checked against
limits.MAX_DECODED_BYTES / MAX_IMAGE_PIXELS before anything is decoded; labels are checked;
only regular files are read (FIFOs, devices and links to them are refused, never opened for
reading). Memory-bound cases run in a subprocess under RLIMIT_AS (conftest.MEMORY_LIMIT)."""
from __future__ import annotations

import gzip
import io
import json
import os
import struct
import zlib

import numpy as np
import pytest

from convscope.cli import main

from conftest import fails, one_line, run_limited, snapshot


def idx_bytes(type_code: int, dims, payload: bytes = b"") -> bytes:
    return bytes([0, 0, type_code, len(dims)]) + struct.pack(f">{len(dims)}I", *dims) + payload


def gzip_of_zeros(header: bytes, zeros: int) -> bytes:
    """A gzip stream of header + ``zeros`` zero bytes (a multiple of 1 MiB), built in well under a
    second: one 1 MiB deflate block ended by a full flush is independent of what precedes it, so
    it is repeated instead of compressing gigabytes. The trailer's CRC is a placeholder: these
    streams are refused before their end."""
    deflate = zlib.compressobj(9, zlib.DEFLATED, -15)
    start = deflate.compress(header) + deflate.flush(zlib.Z_FULL_FLUSH)
    block = deflate.compress(b"\x00" * (1 << 20)) + deflate.flush(zlib.Z_FULL_FLUSH)
    end = deflate.flush(zlib.Z_FINISH)
    body = start + block * (zeros >> 20) + end
    trailer = struct.pack("<II", 0, (len(header) + zeros) & 0xFFFFFFFF)
    return b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff" + body + trailer


def mnist_folder(folder, images: bytes, labels: bytes, gz=False):
    folder.mkdir(exist_ok=True)
    suffix = ".gz" if gz else ""
    (folder / f"train-images-idx3-ubyte{suffix}").write_bytes(images)
    (folder / f"train-labels-idx1-ubyte{suffix}").write_bytes(labels)
    return folder


@pytest.mark.parametrize("dims", [(65536, 65536, 65536, 65536), (4294967295, 1, 1), (1 << 16, 1 << 16, 1 << 8),
                                  (60000, 28, 28 * 1000), (0xFFFFFFFF, 0xFFFFFFFF)])
@pytest.mark.parametrize("type_code", [0x08, 0x0D, 0x0E])
def test_idx_headers_declaring_huge_sizes(tmp_path, capsys, dims, type_code):
    # 65536**4 overflowed an int64 product to 0, passed the size check and failed in reshape.
    folder = mnist_folder(tmp_path / "mnist", idx_bytes(type_code, dims, b"\x00" * 64), idx_bytes(0x08, (4,), b"\0" * 4))
    line = fails(capsys, tmp_path, "train", "--data", folder, "--out", tmp_path / "run", "--epochs", "1", "--quiet")
    assert "header promises" in line or "limits.MAX_DECODED_BYTES" in line


@pytest.mark.parametrize("content", [b"", b"\x00", b"\x00\x00\x08", b"\x00\x00\x08\x03\x00", b"\x01\x02\x03\x04",
                                     b"\x00\x00\x42\x01\x00\x00\x00\x01x", b"\x00\x00\x08\x00"])
def test_idx_malformed_headers(tmp_path, capsys, content):
    folder = mnist_folder(tmp_path / "mnist", content, idx_bytes(0x08, (1,), b"\0"))
    fails(capsys, tmp_path, "train", "--data", folder, "--out", tmp_path / "run", "--epochs", "1", "--quiet")


@pytest.mark.parametrize("damage", ["truncate", "flip", "trailing", "empty-gzip"])
def test_damaged_gzip_idx(tmp_path, capsys, damage):
    data = gzip.compress(idx_bytes(0x08, (10, 4, 4), bytes(160)))
    data = {"truncate": data[:-12], "flip": data[:20] + bytes([data[20] ^ 0xFF]) + data[21:],
            "trailing": data + b"junk", "empty-gzip": b"\x1f\x8b"}[damage]
    folder = mnist_folder(tmp_path / "mnist", data, gzip.compress(idx_bytes(0x08, (10,), bytes(range(10)))), gz=True)
    rc = main(["train", "--data", str(folder), "--out", str(tmp_path / "run"), "--epochs", "1", "--quiet"])
    err = __import__("sys").modules["builtins"]  # noqa: F841 (keeps flake quiet about unused imports)
    captured = capsys.readouterr()
    if damage == "trailing" and rc == 0:  # gzip allows data after the stream; the IDX itself is intact
        return
    one_line(rc, captured.err)


def test_gzip_bomb_idx_under_a_memory_limit(tmp_path):
    # A 4 MB gzip IDX declaring 4 GiB: refused from the header, in a process limited to 3 GiB.
    header = idx_bytes(0x08, (16384, 512, 512))
    folder = mnist_folder(tmp_path / "mnist", gzip_of_zeros(header, 1 << 30), gzip.compress(idx_bytes(0x08, (1,), b"\0")),
                          gz=True)
    before = snapshot(tmp_path)
    rc, _, err = run_limited("train", "--data", folder, "--out", tmp_path / "run", "--epochs", "1", "--quiet")
    assert "limits.MAX_DECODED_BYTES" in one_line(rc, err)
    assert snapshot(tmp_path) == before


def test_gzip_bomb_with_a_lying_header(tmp_path, capsys, monkeypatch):
    # The header says 1×1×1 but the stream inflates further: inflating stops at the budget. (The
    # budget is lowered to 32 MiB here: zlib inflates such streams at ~100 MB/s on this machine.)
    from convscope import limits

    monkeypatch.setattr(limits, "MAX_DECODED_BYTES", 32 << 20)
    folder = mnist_folder(tmp_path / "mnist", gzip_of_zeros(idx_bytes(0x08, (1, 1, 1)), 64 << 20),
                          gzip.compress(idx_bytes(0x08, (1,), b"\0")), gz=True)
    assert "limits.MAX_DECODED_BYTES" in fails(capsys, tmp_path, "train", "--data", folder, "--out",
                                               tmp_path / "run", "--epochs", "1", "--quiet")


def npz_with_header(path, shape, descr="<f4", extra=None):
    import zipfile

    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, {"descr": descr, "fortran_order": False, "shape": shape})
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("x.npy", buffer.getvalue() + b"\x00" * 64)
        labels = io.BytesIO()
        np.save(labels, np.zeros(4, np.int64))
        archive.writestr("y.npy", labels.getvalue())
    return path


@pytest.mark.parametrize("shape", [(1 << 20, 1, 64, 64), (10 ** 6, 3, 224, 224), (1 << 62,), (2, 1 << 40)])
def test_npz_data_declaring_huge_arrays(tmp_path, capsys, shape):
    path = npz_with_header(tmp_path / "data.npz", shape)
    assert "limits.MAX_DECODED_BYTES" in fails(capsys, tmp_path, "train", "--data", path, "--out", tmp_path / "run",
                                               "--epochs", "1", "--quiet")


def test_npz_declaring_gigabytes_under_a_memory_limit(tmp_path):
    # x.npy's header promises 1.5 GiB (the zip holds a few bytes): refused from the header.
    path = npz_with_header(tmp_path / "bomb.npz", (3 << 29,), "|u1")
    rc, _, err = run_limited("train", "--data", path, "--out", tmp_path / "run", "--epochs", "1", "--quiet")
    assert "limits.MAX_DECODED_BYTES" in one_line(rc, err)


@pytest.mark.parametrize("content", [b"0123456789abcdef", b"", b"PK\x03\x04", b"\x93NUMPY\x01\x00v\x00{}"])
def test_npz_data_that_is_not_npz(tmp_path, capsys, content):
    path = tmp_path / "data.npz"
    path.write_bytes(content)
    line = fails(capsys, tmp_path, "train", "--data", path, "--out", tmp_path / "run", "--epochs", "1", "--quiet")
    assert "pickled" not in line


@pytest.mark.parametrize("x, y, words", [
    (np.zeros((20, 1, 4, 4)), np.r_[np.arange(10), 200, np.arange(9)], "a label is corrupt"),
    (np.zeros((20, 1, 4, 4)), np.full(20, 10 ** 6), "at most 100,000|a label is corrupt"),
    (np.zeros((20, 1, 4, 4)), -np.ones(20), "0 or more"),
    (np.zeros((20, 1, 4, 4)), np.full(20, 0.5), "whole numbers"),
    (np.zeros((20, 1, 4, 4)), np.full(20, np.nan), "whole numbers"),
    (np.full((20, 1, 4, 4), np.nan), np.arange(20) % 2, "NaN or infinite"),
    (np.full((20, 1, 4, 4), np.inf), np.arange(20) % 2, "NaN or infinite"),
    (np.zeros((20, 1, 4, 4), np.complex64), np.arange(20) % 2, "must be numbers"),
    (np.array(["a"] * 20), np.arange(20) % 2, "images must be an array|must be numbers"),
    (np.zeros((1, 1, 4, 4)), np.zeros(1), "at least 2 samples"),
    (np.zeros((0, 1, 4, 4)), np.zeros(0), "empty"),
    (np.zeros((20, 1, 4, 4)), np.arange(19) % 2, "one label per image"),
    (np.zeros((20, 5, 4, 4)), np.arange(20) % 2, "1 or 3 channels"),
])
def test_bad_arrays_and_labels(tmp_path, capsys, x, y, words):
    path = tmp_path / "data.npz"
    np.savez(path, x=x, y=y)
    line = fails(capsys, tmp_path, "train", "--data", path, "--out", tmp_path / "run", "--epochs", "1", "--quiet")
    assert any(word in line for word in words.split("|")), line


def test_all_labels_zero_warns(tmp_path, capsys):
    path = tmp_path / "data.npz"
    np.savez(path, x=np.random.default_rng(0).random((20, 1, 4, 4)), y=np.zeros(20, np.int64))
    rc = main(["train", "flatten -> linear(1)", "--data", str(path), "--out", str(tmp_path / "run"), "--epochs", "1",
               "--quiet"])
    line = one_line(rc, capsys.readouterr().err, 0)
    assert "warning" in line and "same class" in line


# ----- images --------------------------------------------------------------------------------
def png_declaring(width, height) -> bytes:
    """A PNG whose IHDR says width×height, followed by a tiny IDAT and IEND (no real pixels)."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 16)) + chunk(b"IEND", b"")


@pytest.mark.parametrize("size", [(30000, 30000), (100000, 2000), (2 ** 31 - 1, 1), (60000, 60000)])
def test_png_declaring_too_many_pixels(tmp_path, capsys, ckpt, size):
    image = tmp_path / "bomb.png"
    image.write_bytes(png_declaring(*size))
    assert "limits.MAX_IMAGE_PIXELS" in fails(capsys, tmp_path, "predict", ckpt, image)


def test_png_bomb_under_a_memory_limit(tmp_path, good_ckpt):
    # A PNG whose header says 11000×11000 (121 Mpx): above the budget, refused from its header.
    (tmp_path / "model.npz").write_bytes(good_ckpt[0])
    (tmp_path / "bomb.png").write_bytes(png_declaring(11000, 11000))
    rc, _, err = run_limited("predict", tmp_path / "model.npz", tmp_path / "bomb.png")
    assert "limits.MAX_IMAGE_PIXELS" in one_line(rc, err)


def test_large_photo_predicts_within_the_memory_limit(tmp_path, good_ckpt):
    # 4500×4500 RGB (20 Mpx, under the budget): decoded once and reduced before any float copy.
    from PIL import Image

    (tmp_path / "model.npz").write_bytes(good_ckpt[0])
    Image.new("RGB", (4500, 4500), (255, 255, 255)).save(tmp_path / "photo.png")
    rc, out, err = run_limited("predict", tmp_path / "model.npz", tmp_path / "photo.png", "--format", "json")
    assert rc == 0 and err == "", err
    assert json.loads(out)[0]["file"].endswith("photo.png")


def test_image_folder_of_large_pngs_under_a_memory_limit(tmp_path):
    # 20 PNGs of 4000×4000 took 6 GB (all decoded images kept); now sizes come from the headers
    # and the total is checked before any image is decoded.
    from PIL import Image

    Image.new("L", (4000, 4000), 40).save(tmp_path / "one.png")
    for label in ("a", "b"):
        (tmp_path / "images" / label).mkdir(parents=True)
        for i in range(10):
            (tmp_path / "images" / label / f"{i}.png").write_bytes((tmp_path / "one.png").read_bytes())
    rc, _, err = run_limited("train", "flatten -> linear(2)", "--data", tmp_path / "images", "--out",
                             tmp_path / "run", "--epochs", "1", "--quiet")
    assert "limits.MAX_DECODED_BYTES" in one_line(rc, err)  # 20 × 4000² × 4 bytes = 1.28 GB > 1 GiB


def test_float_tiff_of_nan_is_refused(tmp_path, capsys, ckpt):
    from PIL import Image

    Image.fromarray(np.full((8, 8), np.nan, np.float32), mode="F").save(tmp_path / "nan.tif")
    assert "NaN or infinite" in fails(capsys, tmp_path, "predict", ckpt, tmp_path / "nan.tif")


@pytest.mark.parametrize("content", [b"", b"\x89PNG\r\n\x1a\n", b"GIF89a", b"\xff\xd8\xff", b"not an image",
                                     b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + b"\xff" * 17])
def test_broken_images(tmp_path, capsys, ckpt, content):
    (tmp_path / "x.png").write_bytes(content)
    fails(capsys, tmp_path, "predict", ckpt, tmp_path / "x.png")


def test_exif_orientation_is_applied(tmp_path, capsys, ckpt):
    # The same drawing stored rotated with an EXIF "rotate 90" tag predicts like the upright one.
    from PIL import Image

    drawing = np.full((40, 24), 255, np.uint8)
    drawing[5:35, 10:14] = 0
    drawing[5:9, 4:14] = 0
    Image.fromarray(drawing).save(tmp_path / "upright.png")
    rotated = Image.fromarray(np.rot90(drawing, 1).copy())  # stored turned left; tag 6 turns it right
    exif = Image.Exif()
    exif[0x0112] = 6
    rotated.save(tmp_path / "rotated.jpg", exif=exif, quality=100)
    Image.fromarray(drawing).save(tmp_path / "upright.jpg", quality=100)
    from convscope.train import preprocessing

    prep = preprocessing.make(1, (8, 8), (0.0, 16.0), invert="auto", crop="ink")
    upright, turned = preprocessing.load_images([tmp_path / "upright.jpg", tmp_path / "rotated.jpg"], prep)
    ignored = preprocessing.image_to_raw(Image.open(tmp_path / "rotated.jpg"), prep)  # EXIF not applied
    # Oracle: the upright drawing. Within JPEG noise with the tag applied; far off without it.
    assert np.abs(turned - upright).max() < 0.1
    assert np.abs(preprocessing.normalize(ignored[None], prep)[0] - upright).max() > 0.3
    assert main(["predict", str(ckpt), str(tmp_path / "rotated.jpg"), "--format", "json"]) == 0


# ----- not regular files -----------------------------------------------------------------------
def special(tmp_path, kind):
    path = tmp_path / f"special-{kind}"
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "zero-link":
        os.symlink("/dev/zero", path)
    elif kind == "null-link":
        os.symlink("/dev/null", path)
    elif kind == "urandom-link":
        os.symlink("/dev/urandom", path)
    elif kind == "fifo-link":
        os.mkfifo(tmp_path / "fifo")
        os.symlink(tmp_path / "fifo", path)
    return path


KINDS = ["fifo", "zero-link", "null-link", "urandom-link", "fifo-link"]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("role", ["image", "checkpoint", "spec", "history", "idx", "npz", "evaluate"])
def test_special_files_as_inputs(tmp_path, capsys, ckpt, kind, role):
    # /dev/zero as history.json or an IDX file was read until memory ran out; a FIFO as predict's
    # image blocked forever. Each is refused by kind before it is opened for reading.
    path = special(tmp_path, kind)
    if role == "history":
        run = tmp_path / "run"
        run.mkdir()
        os.rename(path, run / "history.json")
        argv = ["show", "curves", run, "-o", tmp_path / "c.png"]
    elif role == "idx":
        folder = tmp_path / "mnist"
        folder.mkdir()
        os.rename(path, folder / "train-images-idx3-ubyte")
        (folder / "train-labels-idx1-ubyte").write_bytes(idx_bytes(0x08, (1,), b"\0"))
        argv = ["train", "--data", folder, "--out", tmp_path / "run", "--epochs", "1", "--quiet"]
    else:
        named = tmp_path / {"image": "x.png", "checkpoint": "m.npz", "spec": "s.json", "npz": "d.npz",
                            "evaluate": "e.npz"}[role]
        os.rename(path, named)
        argv = {"image": ["predict", ckpt, named], "checkpoint": ["summary", named], "spec": ["summary", named],
                "npz": ["train", "--data", named, "--out", tmp_path / "run", "--epochs", "1", "--quiet"],
                "evaluate": ["evaluate", named, "--data", "digits"]}[role]
    line = fails(capsys, tmp_path, *argv)
    assert "regular files only" in line or "not found" in line


def test_concatenated_gzip_members_are_one_stream(tmp_path):
    # `cat a.gz b.gz` is a valid gzip file (gzip.decompress reads both members); the bounded
    # inflater must too. Oracle: the IDX bytes before compression.
    from convscope.train.data import read_idx

    raw = idx_bytes(0x08, (6,), bytes(range(6)))
    path = tmp_path / "train-labels-idx1-ubyte.gz"
    path.write_bytes(gzip.compress(raw[:7]) + gzip.compress(raw[7:]))
    assert read_idx(path).tolist() == [0, 1, 2, 3, 4, 5]
