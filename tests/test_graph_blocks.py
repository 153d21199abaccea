"""Four real CNN blocks built as cs.Graph, each equal to its PyTorch twin in float64
(forward, dL/dx and every parameter gradient, batch 1 and 3; state-dict names equal) and
passing finite-difference gradient checks.

The twins are plain nn.Modules written here after torchvision's code (DenseNet's
_DenseBlock, Inception-v3's InceptionE, the SqueezeExcitation block of torchvision.ops,
ShuffleNet v2's InvertedResidual with stride 1), so their parameter names are torchvision's.
"""
import numpy as np
import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402

import convscope as cs  # noqa: E402
from convscope import layers as L  # noqa: E402
from oracle import assert_matches_torch  # noqa: E402


# ----- DenseNet dense block: every layer reads the concatenation of all earlier maps ---------

class DenseLayer(nn.Module):
    def __init__(self, c_in, growth, bn_size):
        super().__init__()
        self.norm1 = nn.BatchNorm2d(c_in)
        self.relu1 = nn.ReLU()
        self.conv1 = nn.Conv2d(c_in, bn_size * growth, 1, bias=False)
        self.norm2 = nn.BatchNorm2d(bn_size * growth)
        self.relu2 = nn.ReLU()
        self.conv2 = nn.Conv2d(bn_size * growth, growth, 3, padding=1, bias=False)

    def forward(self, x):
        return self.conv2(self.relu2(self.norm2(self.conv1(self.relu1(self.norm1(x))))))


class DenseBlock(nn.Module):
    def __init__(self, c_in, layers, growth, bn_size):
        super().__init__()
        for i in range(layers):
            self.add_module(f"denselayer{i + 1}", DenseLayer(c_in + i * growth, growth, bn_size))

    def forward(self, x):
        features = [x]
        for layer in self.children():
            features.append(layer(torch.cat(features, 1)))
        return torch.cat(features, 1)


def dense_block(layers=3, growth=2, bn_size=2):
    nodes, features = [], ["input"]
    for i in range(1, layers + 1):
        p = f"denselayer{i}"
        if len(features) > 1:
            nodes.append((f"{p}.cat", L.Cat(), list(features)))
            source = f"{p}.cat"
        else:
            source = "input"
        nodes += [(f"{p}.norm1", L.BatchNorm2d(), source), (f"{p}.relu1", L.ReLU(), f"{p}.norm1"),
                  (f"{p}.conv1", L.Conv2d(bn_size * growth, 1, bias=False), f"{p}.relu1"),
                  (f"{p}.norm2", L.BatchNorm2d(), f"{p}.conv1"), (f"{p}.relu2", L.ReLU(), f"{p}.norm2"),
                  (f"{p}.conv2", L.Conv2d(growth, 3, padding=1, bias=False), f"{p}.relu2")]
        features.append(f"{p}.conv2")
    nodes.append(("out", L.Cat(), features))
    return cs.Graph(nodes, ["out"])


# ----- Inception-v3 InceptionE: branches that fork again inside ---------------------------

class BasicConv2d(nn.Module):
    def __init__(self, c_in, c_out, **kwargs):
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, bias=False, **kwargs)
        self.bn = nn.BatchNorm2d(c_out, eps=0.001)

    def forward(self, x):
        return F.relu(self.bn(self.conv(x)))


class InceptionE(nn.Module):
    def __init__(self, c_in, w):
        super().__init__()
        self.branch1x1 = BasicConv2d(c_in, w, kernel_size=1)
        self.branch3x3_1 = BasicConv2d(c_in, w, kernel_size=1)
        self.branch3x3_2a = BasicConv2d(w, w, kernel_size=(1, 3), padding=(0, 1))
        self.branch3x3_2b = BasicConv2d(w, w, kernel_size=(3, 1), padding=(1, 0))
        self.branch3x3dbl_1 = BasicConv2d(c_in, w, kernel_size=1)
        self.branch3x3dbl_2 = BasicConv2d(w, w, kernel_size=3, padding=1)
        self.branch3x3dbl_3a = BasicConv2d(w, w, kernel_size=(1, 3), padding=(0, 1))
        self.branch3x3dbl_3b = BasicConv2d(w, w, kernel_size=(3, 1), padding=(1, 0))
        self.branch_pool = BasicConv2d(c_in, w, kernel_size=1)

    def forward(self, x):
        b1 = self.branch1x1(x)
        b3 = self.branch3x3_1(x)
        b3 = torch.cat([self.branch3x3_2a(b3), self.branch3x3_2b(b3)], 1)
        bd = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        bd = torch.cat([self.branch3x3dbl_3a(bd), self.branch3x3dbl_3b(bd)], 1)
        bp = self.branch_pool(F.avg_pool2d(x, kernel_size=3, stride=1, padding=1))
        return torch.cat([b1, b3, bd, bp], 1)


def basic(name, source, w, kernel, padding=0):
    return [(f"{name}.conv", L.Conv2d(w, kernel, padding=padding, bias=False), source),
            (f"{name}.bn", L.BatchNorm2d(eps=0.001), f"{name}.conv"),
            (name, L.ReLU(), f"{name}.bn")]


def inception_e(w=2):
    nodes = (basic("branch1x1", "input", w, 1)
             + basic("branch3x3_1", "input", w, 1)
             + basic("branch3x3_2a", "branch3x3_1", w, (1, 3), (0, 1))   # the fork inside a branch
             + basic("branch3x3_2b", "branch3x3_1", w, (3, 1), (1, 0))
             + [("branch3x3", L.Cat(), ["branch3x3_2a", "branch3x3_2b"])]
             + basic("branch3x3dbl_1", "input", w, 1)
             + basic("branch3x3dbl_2", "branch3x3dbl_1", w, 3, 1)
             + basic("branch3x3dbl_3a", "branch3x3dbl_2", w, (1, 3), (0, 1))
             + basic("branch3x3dbl_3b", "branch3x3dbl_2", w, (3, 1), (1, 0))
             + [("branch3x3dbl", L.Cat(), ["branch3x3dbl_3a", "branch3x3dbl_3b"]),
                ("pool", L.AvgPool2d(3, stride=1, padding=1), "input")]
             + basic("branch_pool", "pool", w, 1)
             + [("out", L.Cat(), ["branch1x1", "branch3x3", "branch3x3dbl", "branch_pool"])])
    return cs.Graph(nodes, "out")


# ----- squeeze-and-excitation: a feature map times a gate computed from itself ---------------

class SqueezeExcitation(nn.Module):
    def __init__(self, channels, squeeze):
        super().__init__()
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(channels, squeeze, 1)
        self.fc2 = nn.Conv2d(squeeze, channels, 1)

    def forward(self, x):
        scale = torch.sigmoid(self.fc2(F.relu(self.fc1(self.avgpool(x)))))
        return scale * x


def se_block(channels=8, squeeze=2):
    return cs.Graph([("avgpool", L.Mean((2, 3), keepdim=True), "input"),   # global pooling as a mean
                     ("fc1", L.Conv2d(squeeze, 1), "avgpool"), ("activation", L.ReLU(), "fc1"),
                     ("fc2", L.Conv2d(channels, 1), "activation"), ("scale", L.Sigmoid(), "fc2"),
                     ("out", L.Mul(), ["scale", "input"])], ["out"])


# ----- ShuffleNet v2 unit (stride 1): split the channels, transform one half, shuffle ---------

def channel_shuffle(x, groups):
    b, c, h, w = x.shape
    return x.view(b, groups, c // groups, h, w).transpose(1, 2).contiguous().view(b, -1, h, w)


class InvertedResidual(nn.Module):
    def __init__(self, channels):
        super().__init__()
        c = channels // 2
        self.branch2 = nn.Sequential(
            nn.Conv2d(c, c, 1, bias=False), nn.BatchNorm2d(c), nn.ReLU(),
            nn.Conv2d(c, c, 3, padding=1, groups=c, bias=False), nn.BatchNorm2d(c),
            nn.Conv2d(c, c, 1, bias=False), nn.BatchNorm2d(c), nn.ReLU())

    def forward(self, x):
        x1, x2 = x.chunk(2, dim=1)
        return channel_shuffle(torch.cat((x1, self.branch2(x2)), dim=1), 2)


def shufflenet_unit(channels=6):
    c = channels // 2
    branch2 = cs.Sequential([L.Conv2d(c, 1, bias=False), L.BatchNorm2d(), L.ReLU(),
                             L.Conv2d(c, 3, padding=1, groups=c, bias=False), L.BatchNorm2d(),
                             L.Conv2d(c, 1, bias=False), L.BatchNorm2d(), L.ReLU()])
    return cs.Graph([("split", L.Chunk(2, dim=1), "input"), ("branch2", branch2, "split:1"),
                     ("cat", L.Cat(), ["split:0", "branch2"]),
                     ("shuffle", L.ChannelShuffle(2), "cat")], "shuffle")


def randomise(model, seed):
    """Batch-norm scales, shifts and running statistics away from their defaults (1, 0, 0, 1):
    with the defaults a ReLU after a 1×1 conv of ReLU outputs sees exact zeros (all inputs
    negative), a kink where finite differences are meaningless, and a test of eval mode would
    not see the running statistics at all."""
    rng = np.random.default_rng(seed)
    for name, p in model.named_parameters():
        if p.value.ndim == 1:
            p.value[...] = rng.uniform(0.5, 1.5, p.shape) if name.endswith("weight") else rng.uniform(-0.5, 0.5, p.shape)
    for name, b in model.named_buffers():
        if name.endswith("running_mean"):
            b[...] = rng.uniform(-0.3, 0.3, b.shape)
        elif name.endswith("running_var"):
            b[...] = rng.uniform(0.5, 2.0, b.shape)
    return model


BLOCKS = {
    "densenet": (dense_block, lambda: DenseBlock(4, 3, 2, 2), (4, 5, 5)),
    "inception_e": (inception_e, lambda: InceptionE(3, 2), (3, 5, 5)),
    "squeeze_excitation": (se_block, lambda: SqueezeExcitation(8, 2), (8, 4, 4)),
    "shufflenet_v2": (shufflenet_unit, lambda: InvertedResidual(6), (6, 4, 4)),
}


@pytest.mark.parametrize("name", sorted(BLOCKS))
@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("train", [True, False])
def test_block_equals_torch_twin(name, batch, train):
    """Forward, dL/dx, every parameter gradient and the state (running statistics) agree
    within 1e-9 in float64, in training mode (batch statistics) and in eval mode."""
    ours, twin, shape = BLOCKS[name]
    torch.manual_seed(0)
    module = twin()
    model = ours()
    randomise(model.build(shape, seed=batch, dtype=np.float64), batch)
    assert list(model.state_dict()) == list(module.state_dict()), "state-dict names and order match torchvision's"
    assert_matches_torch(model, module, shape, batch=batch, seed=batch, train=train)


@pytest.mark.parametrize("name", sorted(BLOCKS))
@pytest.mark.parametrize("batch", [1, 3])
def test_block_gradcheck(name, batch):
    """Analytic gradients equal central differences (eps 1e-6, rtol 1e-5)."""
    ours, _, shape = BLOCKS[name]
    model = randomise(ours().build(shape, seed=1, dtype=np.float64), batch)
    x = np.random.default_rng(batch).standard_normal((batch,) + shape)
    report = cs.gradcheck(model, x)
    assert set(report) == {"x"} | {p.name for p in model.parameters()}


def test_block_output_shapes():
    """Channels by hand: dense 4 + 3·2 = 10; InceptionE 2 + (2+2) + (2+2) + 2 = 12 at 5×5;
    SE keeps 8×4×4; the ShuffleNet unit keeps 6×4×4."""
    assert dense_block().output_shape((4, 5, 5)) == (10, 5, 5)
    assert inception_e().output_shape((3, 5, 5)) == (12, 5, 5)
    assert se_block().output_shape((8, 4, 4)) == (8, 4, 4)
    assert shufflenet_unit().output_shape((6, 4, 4)) == (6, 4, 4)
