"""The explorer's JSON API against oracles: the seed's 2,432; PyTorch (float64) for a unit's
value, its dL/dy and its kernel gradient; hand-derived receptive-field windows; the analysis;
``convscope evaluate`` for the confusion matrix. Servers are real processes (``--port 0``)."""
from __future__ import annotations

import io
import json
import os
import struct
import subprocess
import sys
import zlib

import numpy as np
import pytest

from explore_server import Server, env, train_digits

import convscope as cs


@pytest.fixture(scope="module")
def seed_server():
    server = Server("conv2d(32, 5) -> relu", "--input", "3x32x32")
    yield server
    server.stop()


@pytest.fixture(scope="module")
def lenet_server():
    server = Server("lenet5")
    yield server
    server.stop()


def test_seed_layer_numbers(seed_server):
    # Seed 001: a 5×5 conv with 32 filters on 3 channels has 3·5·5·32 = 2,400 weights,
    # 32 biases and (3·5·5 + 1)·32 = 2,432 parameters.
    status, row = seed_server.get("/api/layer", {"name": "0"})
    assert status == 200
    assert (row["weights"], row["biases"], row["params"]) == (2400, 32, 2432)
    assert "params = (C_in·k_h·k_w + 1)·C_out = (3·5·5 + 1)·32 = 2,432" in row["explain"]
    status, model = seed_server.get("/api/model")
    assert model["total_params"] == 2432 and model["output"] == [32, 28, 28]


def _torch_model(label, shape):
    """The server's model (built with seed 0, as the explorer does) in PyTorch, float64."""
    torch = pytest.importorskip("torch")
    from convscope.spec.resolve import resolve
    found = resolve(label, None if shape is None else "x".join(map(str, shape)))
    model = found.model.build(shape or found.input_shape, seed=0)
    net = cs.interop.to_torch(model).double().eval()
    return torch, model, net


def _server_input(model, key="china"):
    from convscope.explore.inputs import sample, to_model_input
    # The server's input is float32 (the model's dtype); the oracle computes on exactly those values.
    return to_model_input(sample(key), model.input_shape, None, np.float32).astype(np.float64)


def test_unit_value_and_field_match_torch(lenet_server):
    torch, model, net = _torch_model("lenet5", None)
    x = torch.tensor(_server_input(model), requires_grad=True)
    conv1 = net[0](x)                               # lenet5's first layer: conv2d(6, 5)
    status, unit = lenet_server.get("/api/unit", {"layer": "0", "unit": "4,10,17"})
    assert status == 200
    # PyTorch's value of y[4, 10, 17]; the trace's float64 sum and the float32 forward agree with it.
    expected = float(conv1[0, 4, 10, 17].detach())
    assert unit["sum"] == pytest.approx(expected, rel=1e-9, abs=1e-9)
    assert unit["value"] == pytest.approx(expected, rel=1e-5, abs=1e-6)
    assert unit["terms"] == 25                      # 1 channel × 5×5 kernel
    # Output (10, 17) of a 5×5 stride-1 unpadded conv reads rows 10..14, columns 17..21.
    assert unit["field"] == {"start": [10, 17], "size": [5, 5], "global": False}
    assert unit["lines"][-1].endswith(f"= {unit['lines'][-1].split(' = ')[-1]}")


def test_pool_unit_names_the_winner(lenet_server):
    torch, model, net = _torch_model("lenet5", None)
    x = torch.tensor(_server_input(model))
    pooled = net[2](net[1](net[0](x)))              # conv -> relu -> maxpool2d(2)
    status, unit = lenet_server.get("/api/unit", {"layer": "2", "unit": "1,3,5"})
    assert unit["sum"] == pytest.approx(float(pooled[0, 1, 3, 5].detach()), rel=1e-6, abs=1e-9)
    # Pool output (3, 5) after a 5×5 conv: rows 6..7 of the conv output, i.e. input rows 6..11.
    assert unit["field"] == {"start": [6, 10], "size": [6, 6], "global": False}
    assert "←" in unit["lines"][-1]


def test_unit_dl_dy_and_kernel_gradient_match_torch(lenet_server):
    torch, model, net = _torch_model("lenet5", None)
    x = torch.tensor(_server_input(model), requires_grad=True)
    captured = {}

    def hook(module, inputs, output):
        output.retain_grad()
        captured.update(y=output, x=inputs[0])
    net[3].register_forward_hook(hook)
    logits = net(x)
    target = 3
    loss = torch.nn.functional.cross_entropy(logits, torch.tensor([target]))
    loss.backward()
    grad = captured["y"].grad[0]
    unit = tuple(int(i) for i in np.unravel_index(int(grad.abs().argmax()), tuple(grad.shape)))
    upstream = float(grad[unit])
    assert upstream != 0.0
    # The unit's share of dL/dW is dL/dy[unit] × its 6×5×5 input window (a 5×5 stride-1 conv).
    c, i, j = unit
    expected = upstream * captured["x"].detach()[0, :, i:i + 5, j:j + 5].numpy()
    status, out = lenet_server.get("/api/saliency", {"class": target, "layer": "3", "unit": f"{c},{i},{j}"})
    assert status == 200
    assert out["loss"] == pytest.approx(float(loss.detach()), rel=1e-5)
    assert out["unit"]["dL_dy"] == pytest.approx(upstream, rel=1e-4, abs=1e-9)
    assert out["unit"]["kernel_grad"]["shape"] == [6, 5, 5]
    scale = float(np.abs(expected).max())
    np.testing.assert_allclose(out["unit"]["kernel_grad"]["values"], expected, rtol=1e-4, atol=1e-5 * scale)


def test_resnet_edge_unit_reads_padding():
    # resnet18's first layer: conv2d(64, 7, stride=2, padding=3). Unit (5, 0, 1) starts at
    # row 0·2 − 3 = −3 and column 1·2 − 3 = −1: its 7×7 window is partly padding.
    from convscope.explore.session import Explorer
    explorer = Explorer("conv2d(64, 7, stride=2, padding=3)", "3x224x224")
    torch = pytest.importorskip("torch")
    layer = explorer.model
    w = torch.tensor(np.asarray(layer[0]._params["weight"].value, dtype=np.float64))
    b = torch.tensor(np.asarray(layer[0]._params["bias"].value, dtype=np.float64))
    y = torch.nn.functional.conv2d(torch.tensor(explorer.x.astype(np.float64)), w, b, stride=2, padding=3)
    unit = explorer.unit("0", (5, 0, 1))
    assert unit["field"] == {"start": [-3, -1], "size": [7, 7], "global": False}
    assert unit["terms"] == 3 * 4 * 6               # rows 0..3, columns 0..5 inside the image
    assert unit["sum"] == pytest.approx(float(y[0, 5, 0, 1]), rel=1e-9, abs=1e-9)
    assert any("padding" in line for line in unit["lines"])


def test_field_sizes_follow_the_analysis():
    from convscope.explore.session import Explorer
    explorer = Explorer("resnet18")
    report = cs.analyze(explorer.model, (3, 224, 224))
    last_conv = [r for r in report.layers if r.type == "conv2d"][-1]
    unit = explorer.unit(last_conv.name, (0, 3, 3))
    # ResNet-18's last conv sees 435×435 pixels (the commonly quoted receptive field).
    assert unit["field"]["size"] == [435, 435] == list(last_conv.field.size)


def test_bad_requests_are_one_json_line_and_the_server_keeps_serving(lenet_server):
    cases = [("/api/layer", {"name": "nope"}, 400, "no layer named 'nope'"),
             ("/api/unit", {"layer": "0", "unit": "9,0,0"}, 400, "outside 0..5"),
             ("/api/unit", {"layer": "0", "unit": "a,b"}, 400, "must be an integer"),
             ("/api/unit", {"layer": "0"}, 400, "missing query parameter 'unit'"),
             ("/api/saliency", {"class": "99"}, 400, "class must be in 0..9"),
             ("/api/filters", {"layer": "1"}, 400, "not a convolution"),
             ("/api/run", None, 400, "--run"),
             ("/api/nothing", None, 404, "no such route"),
             ("/static/../../etc/passwd", None, 404, "no such route")]
    for path, params, code, words in cases:
        status, body = lenet_server.get(path, params)
        assert status == code, (path, body)
        assert set(body) == {"error"} and words in body["error"] and "\n" not in body["error"]
        assert "Traceback" not in body["error"]
    status, body = lenet_server.request("/api/input", b"{not json", {"Content-Type": "application/json"}, "POST")
    assert status == 400 and "JSON" in body["error"]
    status, body = lenet_server.request("/api/model", b"", method="DELETE")
    assert status == 405
    assert lenet_server.get("/api/model")[0] == 200


def _png_header(width: int, height: int) -> bytes:
    """A PNG whose header claims width×height pixels (a decompression bomb's signature)."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def test_uploads_are_limited_and_images_change_the_prediction(lenet_server):
    from PIL import Image
    from convscope.explore.inputs import MAX_UPLOAD_BYTES, MAX_UPLOAD_PIXELS
    status, body = lenet_server.request("/api/upload", _png_header(30000, 30000), method="POST")
    assert status == 400 and f"{MAX_UPLOAD_PIXELS:,} pixels" in body["error"]
    # A body declared larger than the limit is refused from its Content-Length, before it is read.
    import http.client
    host, port = lenet_server.url.split("//")[1].split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=60)
    connection.putrequest("POST", "/api/upload")
    connection.putheader("Content-Length", str(MAX_UPLOAD_BYTES + 1))
    connection.endheaders()
    response = connection.getresponse()
    assert response.status == 400
    assert f"{MAX_UPLOAD_BYTES + 1:,} bytes; images up to {MAX_UPLOAD_BYTES:,} bytes" in json.loads(response.read())["error"]
    connection.close()
    status, body = lenet_server.request("/api/upload", b"GIF89a not really", method="POST")
    assert status == 400 and "not a readable image" in body["error"]
    before = lenet_server.get("/api/input")[1]["top"]
    buffer = io.BytesIO()
    Image.new("RGB", (50, 40), (250, 20, 20)).save(buffer, format="PNG")
    status, body = lenet_server.request("/api/upload?name=red.png", buffer.getvalue(), method="POST")
    assert status == 200 and body["label"] == "red.png"
    assert [t["probability"] for t in body["top"]] != [t["probability"] for t in before]
    status, body = lenet_server.post_json("/api/input", {"sample": "china"})
    assert status == 200 and body["top"] == before


def test_run_dir_curves_and_confusion_matrix(tmp_path):
    run = tmp_path / "run"
    model = train_digits(str(run))
    server = Server(model, "--run", str(run))
    try:
        status, body = server.get("/api/run")
        assert status == 200
        history = json.loads((run / "history.json").read_text())
        assert [r["epoch"] for r in body["history"]] == [r["epoch"] for r in history] == [1, 2]
        evaluated = json.loads(subprocess.run([sys.executable, "-m", "convscope", "evaluate", model, "--format",
                                               "json"], env=env(), capture_output=True, text=True,
                                              check=True).stdout)
        # The confusion matrix covers the test split (20 % of 1,797 digits = 359.4 -> 359) and its
        # diagonal over its sum is evaluate's accuracy.
        matrix = np.array(body["evaluation"]["confusion_matrix"])
        assert matrix.sum() == evaluated["samples"] == 359
        assert np.trace(matrix) / matrix.sum() == pytest.approx(evaluated["accuracy"])
        # A 1×8×8 model starts on the built-in digit 0; digit-7 is another input.
        status, first = server.get("/api/input")
        assert first["label"].startswith("digit 0") and first["shape"] == [1, 8, 8]
    finally:
        assert server.stop() == 0


def test_ctrl_c_exits_0_and_a_port_in_use_exits_2(seed_server):
    port = seed_server.url.rsplit(":", 1)[1]
    result = subprocess.run([sys.executable, "-m", "convscope", "explore", "lenet5", "--port", port,
                             "--no-browser"], env=env(), capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"convscope: error: port {port} on 127.0.0.1 is in use; choose another with --port N (or --port 0 "
        "for any free port)"]
    server = Server("flatten -> linear(3)", "--input", "1x4x4")
    assert server.url.startswith("http://127.0.0.1:")
    assert server.get("/api/model")[0] == 200
    assert server.stop() == 0


def test_bad_command_lines_are_one_line():
    for args, words in [(["nonsense_model"], "unknown model"), (["lenet5", "--run", "/no/such/dir"], "no such directory"),
                        (["lenet5", "--image", "/no/such.png"], "image"), (["lenet5", "--port", "70000"], "between 0 and 65535")]:
        result = subprocess.run([sys.executable, "-m", "convscope", "explore", *args, "--port", "0", "--no-browser"]
                                if "--port" not in args else [sys.executable, "-m", "convscope", "explore", *args,
                                                              "--no-browser"],
                                env=env(), capture_output=True, text=True, timeout=120)
        assert result.returncode == 2, (args, result.stderr)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("convscope: error:") and words in lines[0], lines


def test_diagram_falls_back_to_one_box_per_row(monkeypatch):
    # A container the diagram cannot lay out yet still gets a page: one box per leaf row.
    from convscope.explore.session import Explorer
    from convscope.viz import diagram
    explorer = Explorer("lenet5")

    def cannot(*args, **kwargs):
        raise TypeError("unknown container")
    monkeypatch.setattr(diagram, "layout", cannot)
    info = explorer.model_info()
    boxes = info["diagram"]["boxes"]
    assert [b["names"] for b in boxes] == [[str(k)] for k in range(12)]   # lenet5's 12 layers
    assert boxes[0]["lines"] == ["0 conv2d(6, 5)", "6×28×28 · 156 params"]


def test_image_option_is_the_first_input(tmp_path):
    # --image FILE is converted exactly as an upload of the same bytes would be.
    from PIL import Image
    path = tmp_path / "stripes.png"
    pixels = np.zeros((40, 40, 3), dtype=np.uint8)
    pixels[:, ::4] = 255
    Image.fromarray(pixels).save(path)
    server = Server("lenet5", "--image", str(path))
    try:
        status, first = server.get("/api/input")
        assert status == 200 and first["label"] == "stripes.png" and first["shape"] == [1, 32, 32]
        status, again = server.request("/api/upload?name=again.png", path.read_bytes(), method="POST")
        assert again["top"] == first["top"] and again["png"] == first["png"]
    finally:
        assert server.stop() == 0
