"""Data loaders on small generated files, good and corrupt (nothing downloads), the
deterministic digits split, and seeded batching."""
import gzip
import struct

import numpy as np
import pytest
from PIL import Image

from convscope import ConvscopeError
from convscope.train import data as D


def _idx_bytes(array: np.ndarray, code: int = 0x08) -> bytes:
    header = bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    dtype = {0x08: ">u1", 0x0C: ">i4", 0x0D: ">f4"}[code]
    return header + array.astype(dtype).tobytes()


def _write_mnist(folder, n=30, test=12, gz=False, seed=0):
    rng = np.random.default_rng(seed)
    files = {}
    for part, count in (("train", n), ("t10k", test)):
        images = rng.integers(0, 256, size=(count, 6, 5), dtype=np.uint8)
        labels = np.arange(count) % 10
        for kind, array, nd in (("images", images, 3), ("labels", labels, 1)):
            name = f"{part}-{kind}-idx{nd}-ubyte" + (".gz" if gz else "")
            raw = _idx_bytes(array)
            (folder / name).write_bytes(gzip.compress(raw) if gz else raw)
            files[(part, kind)] = array
    return files


# ----- digits ---------------------------------------------------------------------------------
def test_digits_split_is_deterministic_and_complete():
    a, b = D.load_data("digits"), D.load_data("digits")
    # 1,797 samples: round(0.2·1797) = 359 test, then round(0.1·1438) = 144 validation.
    assert (len(a.train), len(a.val), len(a.test)) == (1797 - 359 - 144, 144, 359)
    for part in ("train", "val", "test"):
        np.testing.assert_array_equal(getattr(a, part).y, getattr(b, part).y)
        np.testing.assert_array_equal(getattr(a, part).x, getattr(b, part).x)
    assert a.input_shape == (1, 8, 8) and a.class_names == [str(i) for i in range(10)]
    assert a.train.x.max() == 16 and a.train.x.min() == 0  # the data set's own units
    # The three parts are disjoint and cover all samples.
    rows = np.concatenate([a.train.x, a.val.x, a.test.x]).reshape(1797, -1)
    from sklearn.datasets import load_digits
    assert sorted(map(bytes, rows.astype(np.uint8))) == sorted(map(bytes, load_digits().data.astype(np.uint8)))


def test_unknown_data_name_suggests_digits():
    with pytest.raises(ConvscopeError, match="unknown data set 'digts'.*did you mean 'digits'"):
        D.load_data("digts")
    with pytest.raises(ConvscopeError, match="data not found"):
        D.load_data("nowhere/data.npz")


def test_batches_depend_only_on_seed_and_epoch():
    a = D.batch_indices(10, 4, seed=3, epoch=2)
    b = D.batch_indices(10, 4, seed=3, epoch=2)
    assert [len(x) for x in a] == [4, 4, 2]
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert sorted(np.concatenate(a).tolist()) == list(range(10))
    assert not np.array_equal(np.concatenate(a), np.concatenate(D.batch_indices(10, 4, seed=3, epoch=3)))


# ----- IDX ------------------------------------------------------------------------------------
@pytest.mark.parametrize("gz", [False, True])
def test_idx_folder_loads_with_its_own_test_set(tmp_path, gz):
    files = _write_mnist(tmp_path, gz=gz)
    data = D.load_data(str(tmp_path))
    assert data.input_shape == (1, 6, 5)
    np.testing.assert_array_equal(data.test.x[:, 0], files[("t10k", "images")])  # t10k is the test split
    assert len(data.train) + len(data.val) == 30 and len(data.val) == 3  # round(0.1·30)
    assert data.preprocessing["range"] == [0.0, 255.0]


def test_read_idx_other_types(tmp_path):
    values = np.arange(-6, 6, dtype=np.int32).reshape(3, 4)
    (tmp_path / "a.idx").write_bytes(_idx_bytes(values, 0x0C))
    np.testing.assert_array_equal(D.read_idx(tmp_path / "a.idx"), values)


def test_idx_bad_magic_truncated_and_label_mismatch(tmp_path):
    _write_mnist(tmp_path)
    images = tmp_path / "train-images-idx3-ubyte"
    good = images.read_bytes()
    images.write_bytes(b"\x12\x34" + good[2:])
    with pytest.raises(ConvscopeError, match="not an IDX file: expected the magic number"):
        D.load_data(str(tmp_path))
    images.write_bytes(good[:-7])
    with pytest.raises(ConvscopeError, match="truncated or corrupt"):
        D.load_data(str(tmp_path))
    images.write_bytes(good)
    (tmp_path / "train-labels-idx1-ubyte").write_bytes(_idx_bytes(np.zeros(29, np.uint8)))
    with pytest.raises(ConvscopeError, match="expected 30 labels"):
        D.load_data(str(tmp_path))


def test_idx_truncated_gzip(tmp_path):
    _write_mnist(tmp_path, gz=True)
    path = tmp_path / "train-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[:40])
    with pytest.raises(ConvscopeError, match="gzip stream is truncated or corrupt"):
        D.load_data(str(tmp_path))


# ----- CIFAR-10 -------------------------------------------------------------------------------
def _cifar_bytes(labels, seed=0):
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, size=(len(labels), 3072), dtype=np.uint8)
    return np.concatenate([np.asarray(labels, np.uint8)[:, None], pixels], axis=1).tobytes(), pixels


def test_cifar_folder_loads_and_reads_meta(tmp_path):
    raw, pixels = _cifar_bytes(np.arange(20) % 10)
    (tmp_path / "data_batch_1.bin").write_bytes(raw)
    test_raw, test_pixels = _cifar_bytes([3, 1, 4, 1, 5], seed=1)
    (tmp_path / "test_batch.bin").write_bytes(test_raw)
    (tmp_path / "batches.meta.txt").write_text("\n".join(f"c{i}" for i in range(10)) + "\n\n")
    data = D.load_data(str(tmp_path))
    assert data.input_shape == (3, 32, 32) and data.class_names[3] == "c3"
    np.testing.assert_array_equal(data.test.y, [3, 1, 4, 1, 5])
    # record layout: label byte, then the red, green and blue 32×32 planes
    np.testing.assert_array_equal(data.test.x[0].ravel(), test_pixels[0])


def test_cifar_corrupt_size_and_labels(tmp_path):
    raw, _ = _cifar_bytes(np.arange(4))
    (tmp_path / "data_batch_1.bin").write_bytes(raw[:-1])
    with pytest.raises(ConvscopeError, match="not a multiple of 3,073"):
        D.load_data(str(tmp_path))
    raw, _ = _cifar_bytes([0, 1, 12, 2])
    (tmp_path / "data_batch_1.bin").write_bytes(raw)
    with pytest.raises(ConvscopeError, match="labels must be 0-9, found 12"):
        D.load_data(str(tmp_path))


# ----- npz ------------------------------------------------------------------------------------
def test_npz_loads_and_splits(tmp_path):
    x = np.random.default_rng(0).integers(0, 256, size=(50, 7, 7), dtype=np.uint8)
    y = np.arange(50) % 3
    np.savez(tmp_path / "d.npz", x=x, y=y, class_names=np.array(["a", "b", "c"]))
    data = D.load_data(str(tmp_path / "d.npz"))
    assert data.input_shape == (1, 7, 7) and data.class_names == ["a", "b", "c"]
    assert (len(data.test), len(data.val), len(data.train)) == (10, 4, 36)  # 20 % of 50, 10 % of 40


def test_npz_problems_are_named(tmp_path):
    np.savez(tmp_path / "no_y.npz", x=np.zeros((4, 1, 3, 3)))
    with pytest.raises(ConvscopeError, match="expected arrays 'x' .* and 'y'"):
        D.load_data(str(tmp_path / "no_y.npz"))
    np.savez(tmp_path / "neg.npz", x=np.zeros((4, 1, 3, 3)), y=np.array([0, 1, -1, 0]))
    with pytest.raises(ConvscopeError, match="labels must be 0 or more"):
        D.load_data(str(tmp_path / "neg.npz"))
    np.savez(tmp_path / "names.npz", x=np.zeros((4, 1, 3, 3)), y=np.array([0, 1, 5, 0]),
             class_names=np.array(["a", "b"]))
    with pytest.raises(ConvscopeError, match="labels go up to 5 but there are only 2 class names"):
        D.load_data(str(tmp_path / "names.npz"))
    np.savez(tmp_path / "obj.npz", x=np.array([object()] * 4, dtype=object), y=np.zeros(4))
    with pytest.raises(ConvscopeError, match="pickled objects"):
        D.load_data(str(tmp_path / "obj.npz"))
    good = tmp_path / "good.npz"
    np.savez(good, x=np.zeros((40, 1, 8, 8)), y=np.zeros(40, np.int64))
    (tmp_path / "cut.npz").write_bytes(good.read_bytes()[:300])
    with pytest.raises(ConvscopeError, match="truncated or corrupt"):
        D.load_data(str(tmp_path / "cut.npz"))
    np.savez(tmp_path / "nan.npz", x=np.full((4, 1, 2, 2), np.nan), y=np.zeros(4, np.int64))
    with pytest.raises(ConvscopeError, match="NaN"):
        D.load_data(str(tmp_path / "nan.npz"))


# ----- image folder ---------------------------------------------------------------------------
def test_image_folder_loads_classes_in_sorted_order(tmp_path):
    for name, value in (("cat", 30), ("dog", 220)):
        (tmp_path / name).mkdir()
        for i in range(5):
            Image.new("L", (6, 4), value).save(tmp_path / name / f"{i}.png")
    (tmp_path / "dog" / "notes.txt").write_text("ignored: not an image")
    data = D.load_data(str(tmp_path))
    assert data.class_names == ["cat", "dog"] and data.input_shape == (1, 4, 6)
    everything = np.concatenate([data.train.x, data.val.x, data.test.x])
    labels = np.concatenate([data.train.y, data.val.y, data.test.y])
    np.testing.assert_allclose(everything[labels == 1], 220.0, rtol=1e-6)  # raw 0-255 units


def test_image_folder_corrupt_image_is_named(tmp_path):
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        Image.new("RGB", (4, 4)).save(tmp_path / name / "ok.png")
    (tmp_path / "b" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    with pytest.raises(ConvscopeError, match=r"broken\.png is not a readable image"):
        D.load_data(str(tmp_path))


def test_image_folder_needs_two_classes_with_images(tmp_path):
    (tmp_path / "only").mkdir()
    Image.new("L", (4, 4)).save(tmp_path / "only" / "x.png")
    with pytest.raises(ConvscopeError, match="at least 2 classes, found 1"):
        D.load_data(str(tmp_path))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConvscopeError, match="holds no images"):
        D.load_data(str(tmp_path))


def test_empty_folder_is_not_a_data_set(tmp_path):
    with pytest.raises(ConvscopeError, match="found no data set here"):
        D.load_data(str(tmp_path))
