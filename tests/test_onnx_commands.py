"""A model brought as an .onnx file, through every command that takes MODEL, and trained.

The model: a small torch CNN for 1×8×8 digits with a batch norm (running statistics
randomised), a concat of two branches, a residual addition and a squeeze-excitation gate (a
Mul, so the graph reader reads it as a cs.Graph). Oracles: the torch module itself (outputs,
softmax probabilities, float64 autograd gradients) and ONNX Runtime for the exported file.
"""
from __future__ import annotations

import json
import os

import numpy as np
import pytest

import convscope as cs

torch = pytest.importorskip("torch")
pytest.importorskip("onnx")
nn = torch.nn


class Small(nn.Module):
    """conv+bn+relu -> cat(1×1 conv, 3×3 conv) -> x + conv(x) -> relu -> x·sigmoid(mean(x)) -> linear."""

    def __init__(self):
        super().__init__()
        self.stem, self.bn = nn.Conv2d(1, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8)
        self.a, self.b = nn.Conv2d(8, 4, 1), nn.Conv2d(8, 4, 3, padding=1)
        self.res = nn.Conv2d(8, 8, 3, padding=1)
        self.gate = nn.Conv2d(8, 8, 1)
        self.fc = nn.Linear(8 * 8 * 8, 10)

    def forward(self, x):
        x = torch.relu(self.bn(self.stem(x)))
        x = torch.cat([self.a(x), self.b(x)], 1)
        x = torch.relu(x + self.res(x))
        x = x * torch.sigmoid(self.gate(x.mean((2, 3), keepdim=True)))
        return self.fc(torch.flatten(x, 1))


def small_module():
    torch.manual_seed(0)
    module = Small().eval()
    with torch.no_grad():
        module.bn.running_mean.uniform_(-0.5, 0.5)
        module.bn.running_var.uniform_(0.5, 2.0)
    return module


def export(module, path, fold=True):
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, (torch.zeros(1, 1, 8, 8),), os.fspath(path), dynamo=False,
                          do_constant_folding=fold)
    return os.fspath(path)


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    folder = tmp_path_factory.mktemp("small_onnx")
    module = small_module()
    return module, export(module, folder / "small.onnx"), folder


def test_backward_through_an_imported_graph_equals_torch_autograd(tmp_path):
    # Without constant folding the batch norm stays a layer, so the imported model is the module:
    # in float64 and training mode (batch statistics, batch 2) the forward, dL/dx and every
    # parameter's gradient equal torch autograd's.
    module = small_module()
    model = cs.interop.from_onnx(export(module, tmp_path / "nofold.onnx", fold=False))
    assert isinstance(model, cs.Graph)
    names = [k for k, _ in module.named_parameters()]
    assert [k for k, _ in model.named_parameters()] == names  # nodes named after the weights
    state = model.state_dict()
    model.build((1, 8, 8), dtype=np.float64)
    model.load_state_dict({k: v.astype(np.float64) for k, v in state.items()})
    module = module.double().train()
    x = np.random.default_rng(1).standard_normal((2, 1, 8, 8))
    y = model.forward(x, train=True)
    tx = torch.tensor(x, requires_grad=True)
    ty = module(tx)
    np.testing.assert_allclose(y, ty.detach().numpy(), rtol=1e-12, atol=1e-12)
    dy = np.random.default_rng(2).standard_normal(y.shape)
    dx = model.backward(dy)
    ty.backward(torch.from_numpy(dy))
    np.testing.assert_allclose(dx, tx.grad.numpy(), rtol=1e-10, atol=1e-12)
    ours = dict(model.named_parameters())
    for key, p in module.named_parameters():
        np.testing.assert_allclose(ours[key].grad, p.grad.numpy(), rtol=1e-10, atol=1e-12, err_msg=key)


def _probabilities(module, x):
    with torch.no_grad():
        return torch.softmax(module.float()(torch.from_numpy(x)), 1).numpy()


def test_summary_show_predict_evaluate_export_of_an_onnx_file(small, capsys):
    from PIL import Image

    from convscope.cli import main
    module, path, folder = small
    assert main(["summary", path]) == 0
    out = capsys.readouterr().out
    # torch: 72 + 16 (bn) + 36 + 292 + 584 + 72 + 5,130 = 6,202; the exporter folded the batch
    # norm (16 parameters) into the stem, which gains 8 biases: the file holds 6,194
    assert "6,194" in out and "8 (or 16) more parameters" in out  # 16 had the stem conv a bias
    for picture in ("architecture", "filters", "featuremaps"):
        target = folder / f"{picture}.png"
        args = ["show", picture, path] + (["--layer", "res"] if picture == "filters" else [])
        if picture == "featuremaps":
            image = folder / "digit.png"
            Image.fromarray(np.arange(64, dtype=np.uint8).reshape(8, 8) * 4).save(image)
            args.append(os.fspath(image))
        assert main(args + ["-o", os.fspath(target)]) == 0, picture
        assert target.stat().st_size > 0
    capsys.readouterr()
    # predict: an 8×8 grayscale PNG needs no resizing; the file's preprocessing scales to [0, 1]
    pixels = np.random.default_rng(3).integers(0, 256, (8, 8)).astype(np.uint8)
    Image.fromarray(pixels).save(folder / "random.png")
    assert main(["predict", path, os.fspath(folder / "random.png"), "--format", "json"]) == 0
    (got,) = json.loads(capsys.readouterr().out)
    p = _probabilities(module, (pixels / 255.0).astype(np.float32).reshape(1, 1, 8, 8))[0]
    assert got["label"] == int(p.argmax()) and got["probability"] == pytest.approx(float(p.max()), rel=1e-5)
    # evaluate: the accuracy of the torch module on the same test split and preprocessing
    assert main(["evaluate", path, "--data", "digits", "--format", "json"]) == 0
    report = json.loads(capsys.readouterr().out)
    from convscope.commands.resolve import load_model_file
    from convscope.train import load_data, preprocessing
    data = load_data("digits")
    x = preprocessing.normalize(data.test.x, load_model_file(path).preprocessing, dtype=np.float32)
    expected = float((_probabilities(module, x).argmax(1) == data.test.y).mean())
    assert report["samples"] == len(data.test) and report["accuracy"] == pytest.approx(expected, abs=1e-12)
    # export: back to ONNX, which ONNX Runtime runs to the torch module's output
    ort = pytest.importorskip("onnxruntime")
    again = os.fspath(folder / "again.onnx")
    assert main(["export", path, "-o", again]) == 0
    session = ort.InferenceSession(again, providers=["CPUExecutionProvider"])
    x = np.random.default_rng(4).standard_normal((3, 1, 8, 8)).astype(np.float32)
    (y,) = session.run(None, {session.get_inputs()[0].name: x})
    with torch.no_grad():
        np.testing.assert_allclose(y, module(torch.from_numpy(x)).numpy(), rtol=1e-4, atol=1e-5)


def test_train_fine_tunes_the_files_weights(small, tmp_path, capsys):
    from convscope.cli import main
    from convscope.train.checkpoint import load_checkpoint
    _, path, _ = small
    start = cs.interop.from_onnx(path).state_dict()
    # a step far too small to move the weights: the run starts from the file's, not a fresh init
    assert main(["train", path, "--data", "digits", "--epochs", "1", "--lr", "1e-12", "--optimizer", "sgd",
                 "--momentum", "0", "--out", os.fspath(tmp_path / "still"), "--quiet"]) == 0
    still = load_checkpoint(os.fspath(tmp_path / "still" / "model.npz")).model.state_dict()
    for key, value in start.items():
        np.testing.assert_allclose(still[key], value, rtol=1e-6, atol=1e-9, err_msg=key)
    # and it learns: 3 epochs of Adam take the digits' test accuracy from chance (~10 %) past 80 %
    assert main(["train", path, "--data", "digits", "--epochs", "3", "--out", os.fspath(tmp_path / "run"),
                 "--quiet"]) == 0
    capsys.readouterr()
    assert main(["evaluate", os.fspath(tmp_path / "run" / "model.npz"), "--data", "digits", "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["accuracy"] > 0.8


def test_explorer_shows_the_files_weights(small):
    from convscope.explore import Explorer
    module, path, _ = small
    explorer = Explorer(path)
    model = cs.interop.from_onnx(path)
    for key, value in model.state_dict().items():
        np.testing.assert_array_equal(explorer.model.state_dict()[key], value, err_msg=key)
    assert explorer.weights == "weights from small.onnx"
    info = explorer.model_info()
    assert info["total_params"] == 6194  # as the summary: torch's 6,202 less the 8 folded
    # the unit's value is the torch module's activation at that place (fc: the logits)
    with torch.no_grad():
        logits = module.float()(torch.from_numpy(explorer.x.astype(np.float32))).numpy()[0]
    unit = explorer.unit("fc", [int(logits.argmax())])
    assert unit["value"] == pytest.approx(float(logits.max()), rel=1e-5)


@pytest.fixture(scope="module")
def trained_checkpoint(tmp_path_factory):
    """A digits model trained for 2 epochs with convscope (its preprocessing divides by 16)."""
    from convscope.cli import main
    folder = tmp_path_factory.mktemp("trained")
    assert main(["train", "conv2d(4, 3, padding=1) -> relu -> flatten -> linear(10)", "--data", "digits",
                 "--epochs", "2", "--out", os.fspath(folder / "run"), "--quiet"]) == 0
    return os.fspath(folder / "run" / "model.npz"), folder


def test_an_exported_checkpoint_evaluates_and_predicts_as_the_checkpoint(trained_checkpoint, capsys):
    """The checkpoint is the oracle: the ONNX file it exports keeps its preprocessing (pixels /
    16, which ONNX has no field for) and class names in the file's metadata, so evaluate gives
    the same accuracy and loss, and predict the same probabilities. Without them the file's
    inputs would be scaled to [0, 1] and the accuracy would fall to chance."""
    from PIL import Image

    from convscope.cli import main
    checkpoint, folder = trained_checkpoint
    onnx_path = os.fspath(folder / "net.onnx")
    assert main(["export", checkpoint, "-o", onnx_path]) == 0
    capsys.readouterr()
    reports = []
    for model in (checkpoint, onnx_path):
        assert main(["evaluate", model, "--data", "digits", "--format", "json"]) == 0
        reports.append(json.loads(capsys.readouterr().out))
    assert reports[0]["accuracy"] > 0.8
    assert reports[1]["accuracy"] == reports[0]["accuracy"]
    assert reports[1]["loss"] == pytest.approx(reports[0]["loss"], rel=1e-5)
    Image.fromarray((np.arange(64).reshape(8, 8) * 4).astype(np.uint8)).save(folder / "d.png")
    predictions = []
    for model in (checkpoint, onnx_path):
        assert main(["predict", model, os.fspath(folder / "d.png"), "--format", "json"]) == 0
        predictions.append(json.loads(capsys.readouterr().out)[0])
    assert predictions[1]["label"] == predictions[0]["label"]
    assert predictions[1]["probability"] == pytest.approx(predictions[0]["probability"], rel=1e-5)


@pytest.mark.parametrize("text, words", [
    ("{not json", "not valid JSON"),
    ('{"class_names": [1, 2]}', "class_names must be strings"),
    ('{"preprocessing": {"channels": 1, "size": [8, 8], "std": [0.0]}}', "preprocessing"),
    ('{"code": "import os"}', "must be an object with preprocessing and class_names"),
    ("[1]", "must be an object"),
])
def test_edited_convscope_metadata_is_one_line(trained_checkpoint, tmp_path, capsys, text, words):
    onnx = pytest.importorskip("onnx")
    from convscope.cli import main
    checkpoint, folder = trained_checkpoint
    onnx_path = os.fspath(folder / "net-meta.onnx")
    assert main(["export", checkpoint, "-o", onnx_path, "--force"]) == 0
    proto = onnx.load(onnx_path)
    entry = next(e for e in proto.metadata_props if e.key == "convscope")
    entry.value = text
    edited = tmp_path / "edited.onnx"
    edited.write_bytes(proto.SerializeToString())
    capsys.readouterr()
    assert main(["evaluate", os.fspath(edited), "--data", "digits"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and words in err, err
