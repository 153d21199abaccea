"""Issue 15 points 6 and 9 (parts): --resize/--channels in train, evaluate and predict (stored
in the checkpoint), evaluate's confusion matrix with per-class precision and recall (oracle:
scikit-learn), predict --top-k."""
import json

import numpy as np
import pytest
from PIL import Image

import convscope as cs
from convscope.cli import main
from convscope.train import transform


@pytest.fixture(scope="module")
def lenet_run(tmp_path_factory):
    """The zoo's lenet5 (1×32×32) on digits (1×8×8), the issue's case, two epochs."""
    out = tmp_path_factory.mktemp("runs") / "lenet"
    assert main(["train", "lenet5", "--data", "digits", "--resize", "32x32", "--epochs", "2",
                 "--out", str(out), "--quiet"]) == 0
    return out


def test_lenet5_on_digits_without_resize_points_at_it(tmp_path, capsys):
    assert main(["train", "lenet5", "--data", "digits", "--out", str(tmp_path / "r"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "1×32×32" in err and "1×8×8" in err and "--resize 32x32" in err and err.count("\n") == 1


def test_the_checkpoint_records_the_resize(lenet_run):
    ckpt = cs.train.load_checkpoint(str(lenet_run / "model.npz"))
    assert ckpt.preprocessing["size"] == [32, 32]
    assert ckpt.preprocessing["source"] == {"channels": 1, "size": [8, 8]}
    assert tuple(ckpt.input_shape) == (1, 32, 32)


def test_evaluate_applies_it_and_reports_precision_and_recall(lenet_run, capsys):
    from sklearn.metrics import confusion_matrix, precision_score, recall_score

    assert main(["evaluate", str(lenet_run / "model.npz"), "--format", "json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["samples"] == 359  # the digits test split
    # oracle: scikit-learn on the model's own predictions of the resized test split
    ckpt = cs.train.load_checkpoint(str(lenet_run / "model.npz"))
    data = transform.apply(cs.train.load_data("digits"), (32, 32))
    x = cs.train.preprocessing.normalize(data.test.x, ckpt.preprocessing)
    predicted = ckpt.model.forward(x, train=False).argmax(axis=1)
    assert result["confusion_matrix"] == confusion_matrix(data.test.y, predicted, labels=range(10)).tolist()
    assert result["accuracy"] == pytest.approx(float(np.mean(predicted == data.test.y)), abs=1e-12)
    expected_p = precision_score(data.test.y, predicted, labels=range(10), average=None, zero_division=0)
    expected_r = recall_score(data.test.y, predicted, labels=range(10), average=None, zero_division=0)
    assert np.allclose([p or 0.0 for p in result["precision"]], expected_p, atol=1e-12)
    assert np.allclose(result["recall"], expected_r, atol=1e-12)
    assert result["accuracy"] > 0.5  # two epochs of lenet5 on 32×32 digits: far above chance (10 %)


def test_predict_top_k_on_a_resized_checkpoint(lenet_run, tmp_path, capsys):
    test = cs.train.load_data("digits").test
    paths = []
    for i in range(10):
        pixels = 255 - np.kron(test.x[i, 0], np.ones((10, 10))) * 255 / 16
        paths.append(tmp_path / f"d{i}.png")
        Image.fromarray(pixels.astype(np.uint8), "L").convert("RGB").save(paths[-1])
    assert main(["predict", str(lenet_run / "model.npz"), *map(str, paths), "--top-k", "3",
                 "--format", "json"]) == 0
    results = json.loads(capsys.readouterr().out)
    for r in results:
        top = r["top"]
        assert len(top) == 3 and top[0]["index"] == r["index"]
        probabilities = [t["probability"] for t in top]
        assert probabilities == sorted(probabilities, reverse=True) and sum(probabilities) <= 1 + 1e-9
    assert sum(r["label"] == int(y) for r, y in zip(results, test.y[:10])) >= 5  # chance: 1 of 10


def test_resize_and_channels_of_arrays():
    # 2×2 -> 1×1 by area average: (0 + 2 + 4 + 6) / 4 = 3; gray -> RGB repeats; RGB -> gray is the mean
    x = np.array([[[[0.0, 2.0], [4.0, 6.0]]]], dtype=np.float32)
    assert transform.resize_planes(x, (1, 1)).tolist() == [[[[3.0]]]]
    rgb = transform.convert_channels(x, 3)
    assert rgb.shape == (1, 3, 2, 2) and np.array_equal(rgb[:, 2], x[:, 0])
    assert np.allclose(transform.convert_channels(np.concatenate([x, 2 * x, 3 * x], 1), 1), 2 * x)


@pytest.mark.parametrize("bad", ["32", "0x32", "axb", "32x32x3"])
def test_bad_resize_is_one_line(bad, capsys, tmp_path):
    assert main(["train", "--data", "digits", "--resize", bad, "--out", str(tmp_path / "r"), "--quiet"]) == 2
    assert "--resize takes HEIGHTxWIDTH" in capsys.readouterr().err
