"""VGG-16 (configuration D) as torchvision builds it (138,357,544 parameters, 15.47 GMACs).

Source: K. Simonyan, A. Zisserman, "Very Deep Convolutional Networks for Large-Scale Image
Recognition", ICLR 2015, Table 1 column D, input 3×224×224; torchvision.models.vgg16 (no
batch norm), whose model card lists 138,357,544 parameters and 15.47 GFLOPS (MACs).
"""
from ._blocks import adaptive_avgpool, conv, dropout, flatten, linear, maxpool, relu

NAME = "vgg16"
INPUT = [3, 224, 224]
PARAMS = 138_357_544
GMACS = 15.47

#: Table 1, column D: output channels of each 3×3 convolution, "M" a 2×2 max pool.
CONFIG_D = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"]


def _features():
    layers = []
    for item in CONFIG_D:
        layers += [maxpool(2, stride=2)] if item == "M" else [conv(item, 3, padding=1), relu()]
    return layers


SPEC = {
    "name": NAME,
    "source": "Simonyan & Zisserman 2015 (ICLR), Table 1 column D; torchvision.models.vgg16: "
              "138,357,544 parameters, 15.47 GFLOPS (MACs) at 3×224×224",
    "input": INPUT,
    "layers": _features() + [
        adaptive_avgpool(7),
        flatten(),
        linear(4096), relu(), dropout(0.5),
        linear(4096), relu(), dropout(0.5),
        linear(1000),
    ],
}
