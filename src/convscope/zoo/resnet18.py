"""ResNet-18 as torchvision builds it (11,689,512 parameters, 1.81 GMACs).

Source: K. He, X. Zhang, S. Ren, J. Sun, "Deep Residual Learning for Image Recognition",
CVPR 2016, Table 1 (18-layer column), input 3×224×224; torchvision.models.resnet18, whose
model card lists 11,689,512 parameters and 1.81 GFLOPS (MACs). Basic blocks: body
conv3×3–bn–relu–conv3×3–bn, added to the input (identity) or, where the block changes
size, to a conv1×1 (stride 2) + bn shortcut ("option B"); ReLU after the add.
"""
from ._blocks import adaptive_avgpool, conv_bn_relu, flatten, linear, maxpool, relu, residual

NAME = "resnet18"
INPUT = [3, 224, 224]
PARAMS = 11_689_512
GMACS = 1.81


def basic_block(channels: int, stride: int = 1, downsample: bool = False) -> list:
    body = conv_bn_relu(channels, 3, stride, 1) + conv_bn_relu(channels, 3, 1, 1, activation=False)
    shortcut = conv_bn_relu(channels, 1, stride, 0, activation=False) if downsample else None
    return [residual(body, shortcut), relu()]


def stage(channels: int, stride: int) -> list:
    return basic_block(channels, stride, downsample=stride != 1) + basic_block(channels)


SPEC = {
    "name": NAME,
    "source": "He et al. 2016 (CVPR), Table 1, 18-layer; torchvision.models.resnet18: 11,689,512 "
              "parameters, 1.81 GFLOPS (MACs) at 3×224×224",
    "input": INPUT,
    "layers": [
        *conv_bn_relu(64, 7, stride=2, padding=3),
        maxpool(3, stride=2, padding=1),
        *stage(64, 1),
        *stage(128, 2),
        *stage(256, 2),
        *stage(512, 2),
        adaptive_avgpool(1),
        flatten(),
        linear(1000),
    ],
}
