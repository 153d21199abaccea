"""What we time. Each case is engine-neutral data with a unique ``key``; workers turn keys into
engine calls (benchmarks/worker.py, benchmarks/nets.py) and the harness into rows.

Convolution sizes follow issue 6: LeNet, CIFAR, ResNet (3×3, 64 ch, 32×32), AlexNet conv1
(11×11 stride 4) and conv5 (256 ch, 13×13), a 1×1 (256→128, 28×28), a one-channel layer where
PyTorch is weakest and a MobileNet-like depthwise layer. Networks follow issue 16.
"""
from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple


@dataclass(frozen=True)
class ConvCase:
    name: str
    batch: int
    in_channels: int
    size: int
    out_channels: int
    kernel: int
    stride: int = 1
    padding: int = 0
    groups: int = 1

    @property
    def input_shape(self) -> Tuple[int, int, int]:
        return (self.in_channels, self.size, self.size)


CONV_CASES = [
    ConvCase("lenet-conv1 1→6 5×5 32²", 64, 1, 32, 6, 5),
    ConvCase("lenet-conv2 6→16 5×5 14²", 64, 6, 14, 16, 5),
    ConvCase("cifar 3→32 3×3 32²", 32, 3, 32, 32, 3, 1, 1),
    ConvCase("resnet 64→64 3×3 32²", 8, 64, 32, 64, 3, 1, 1),
    ConvCase("alexnet-conv1 3→64 11×11/4 224²", 4, 3, 224, 64, 11, 4, 2),
    ConvCase("alexnet-conv5 256→256 3×3 13²", 8, 256, 13, 256, 3, 1, 1),
    ConvCase("1×1 256→128 28²", 8, 256, 28, 128, 1),
    ConvCase("one-channel 1→1 3×3 128²", 16, 1, 128, 1, 3, 1, 1),
    ConvCase("depthwise 64 3×3 56²", 8, 64, 56, 64, 3, 1, 1, groups=64),
]
CONV_MODES = ("fwd", "fwdbwd")


def conv_key(mode: str, index: int) -> str:
    return f"conv/{mode}/{index}"


#: LeNet-5 in its common modern form (the zoo's lenet5 with ReLU and max pooling); 1×32×32 by
#: default, any side from 28 up fits.
LENET_TEXT = ("conv2d(6, 5) -> relu -> maxpool2d(2) -> conv2d(16, 5) -> relu -> maxpool2d(2) -> "
              "flatten -> linear(120) -> relu -> linear(84) -> relu -> linear(10)")
LENET_INPUT = (1, 32, 32)

#: Networks: input channels and what each is (builders in benchmarks/nets.py).
NETS: Dict[str, Tuple[int, str]] = {
    "lenet5": (1, "LeNet-5 (ReLU, max pooling), 10 classes"),
    "resnet18-cifar": (3, "ResNet-18 with a CIFAR stem (3×3 stride-1 conv, no max-pool), 10 classes"),
    "resnet18": (3, "the zoo's resnet18 vs torchvision resnet18, 1000 classes"),
    "mobilenet_v2": (3, "torchvision mobilenet_v2(weights=None); convscope's via cs.interop.from_torch"),
}


@dataclass(frozen=True)
class NetCase:
    """A whole network: ``kind`` "train" (forward in training mode, cross-entropy, backward,
    SGD step with lr 0.01) or "infer" (forward in inference mode, no gradients)."""

    net: str
    kind: str
    batch: int
    size: int

    @property
    def key(self) -> str:
        return f"net/{self.net}/{self.kind}/b{self.batch}/s{self.size}"

    @property
    def input_shape(self) -> Tuple[int, int, int]:
        return (NETS[self.net][0], self.size, self.size)

    @property
    def label(self) -> str:
        step = "training step" if self.kind == "train" else "inference"
        return f"{self.net} {step} b{self.batch} {self.size}²"


def parse_key(key: str):
    """A key back into its case: ("conv", mode, ConvCase) or ("net", NetCase)."""
    parts = key.split("/")
    if parts[0] == "conv" and len(parts) == 3 and parts[1] in CONV_MODES:
        return ("conv", parts[1], CONV_CASES[int(parts[2])])
    if parts[0] == "net" and len(parts) == 5 and parts[1] in NETS and parts[2] in ("train", "infer"):
        return ("net", NetCase(parts[1], parts[2], int(parts[3][1:]), int(parts[4][1:])))
    raise ValueError(f"not a benchmark case key: {key!r}")


@dataclass(frozen=True)
class Comparison:
    """One row of the results table: a case timed on convscope and on ``others``, with the
    issue-16 goal for each other engine (None: no goal, shown for information)."""

    section: str
    case: NetCase
    others: Tuple[str, ...]
    goals: Dict[str, Optional[float]]


LENET_COMPARISONS = [
    Comparison("LeNet-5", NetCase("lenet5", "train", 64, 32), ("torch",), {"torch": 0.8}),
    Comparison("LeNet-5", NetCase("lenet5", "infer", 1, 32), ("torch", "onnxruntime"),
               {"torch": 0.5, "onnxruntime": 3.0}),
    Comparison("LeNet-5", NetCase("lenet5", "infer", 64, 32), ("torch", "onnxruntime"),
               {"torch": 1.0, "onnxruntime": None}),
]
NET_COMPARISONS = [
    Comparison("networks", NetCase("resnet18-cifar", "train", 32, 32), ("torch",), {"torch": 1.2}),
    Comparison("networks", NetCase("mobilenet_v2", "infer", 1, 224), ("torch",), {"torch": 1.5}),
    Comparison("networks", NetCase("resnet18", "infer", 1, 224), ("torch",), {"torch": 1.2}),
]

#: Issue 16's goals for the convolution layers: (geometric mean, every layer), at most.
CONV_GOALS = {"fwd": (1.0, 2.0), "fwdbwd": (0.8, 1.5)}

#: Memory goals: RSS rise of convscope at most this times PyTorch's, for these training cases.
MEMORY_GOALS = {NetCase("lenet5", "train", 64, 32).key: 0.5,
                NetCase("resnet18-cifar", "train", 32, 32).key: 1.0}

#: The main job must be at most this times the plain PyTorch loop's whole-process time.
MAIN_JOB_GOAL = 1.0

#: Scaling grids: time against batch at the base side, and against side at SCALING_BATCH.
SCALING_BATCHES = (1, 8, 64, 256)
SCALING_BATCH = 8
SCALING = {
    # net: (base side, sides, {kind: batches})
    "lenet5": (32, (28, 32, 64), {"infer": SCALING_BATCHES, "train": SCALING_BATCHES}),
    # A ResNet-18 training step at batch 256 takes tens of seconds on 2 cores; the training
    # batch sweep stops at 64 so that the whole run fits in about 15 minutes.
    "resnet18-cifar": (32, (32, 64, 128), {"infer": SCALING_BATCHES, "train": (1, 8, 64)}),
}


def scaling_cases(net: str, kind: str) -> List[NetCase]:
    """The grid of one (net, kind), without repeats: the batch sweep at the base side, then the
    side sweep at SCALING_BATCH."""
    base, sides, batches = SCALING[net]
    cases = [NetCase(net, kind, b, base) for b in batches[kind]]
    cases += [NetCase(net, kind, SCALING_BATCH, s) for s in sides if s != base]
    return cases
