"""What we time. Each case is engine-neutral data; workers turn it into engine calls.

Convolution sizes follow the issue: LeNet, CIFAR, ResNet (3×3, 64 ch, 32×32), AlexNet conv1
(11×11 stride 4) and conv5 (256 ch, 13×13), a 1×1 (256→128, 28×28), and a one-channel
layer where PyTorch is weakest.
"""
from dataclasses import dataclass, field
from typing import Tuple


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

#: LeNet-5 in its common modern form on 1×32×32 (the zoo's lenet5 with ReLU and max pooling).
LENET_TEXT = ("conv2d(6, 5) -> relu -> maxpool2d(2) -> conv2d(16, 5) -> relu -> maxpool2d(2) -> "
              "flatten -> linear(120) -> relu -> linear(84) -> relu -> linear(10)")
LENET_INPUT = (1, 32, 32)


@dataclass(frozen=True)
class ModelCase:
    name: str
    kind: str          # "train" (forward + loss + backward + SGD step) or "infer"
    batch: int
    text: str = LENET_TEXT
    input_shape: Tuple[int, ...] = field(default=LENET_INPUT)


MODEL_CASES = [
    ModelCase("lenet5 train step b64", "train", 64),
    ModelCase("lenet5 inference b1", "infer", 1),
    ModelCase("lenet5 inference b64", "infer", 64),
]
