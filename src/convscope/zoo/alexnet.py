"""AlexNet as torchvision builds it (61,100,840 parameters, 0.714 GMACs at 224×224).

Source: torchvision.models.alexnet (after A. Krizhevsky, "One weird trick for parallelizing
convolutional neural networks", arXiv:1404.5997, 2014, the single-tower variant: 64-192-384-
256-256 filters, no local response normalisation), input 3×224×224. torchvision's model card
lists 61,100,840 parameters and 0.71 GFLOPS (multiply-accumulates, in our terms 0.714 GMACs).
The adaptive average pool to 6×6 is an identity at 224×224 and lets other sizes reach the
classifier's 256·6·6 = 9,216 inputs.
"""
from ._blocks import adaptive_avgpool, conv, dropout, flatten, linear, maxpool, relu

NAME = "alexnet"
INPUT = [3, 224, 224]
PARAMS = 61_100_840
GMACS = 0.714

SPEC = {
    "name": NAME,
    "source": "torchvision.models.alexnet (Krizhevsky 2014, arXiv:1404.5997): 61,100,840 parameters, "
              "0.71 GFLOPS (MACs) at 3×224×224",
    "input": INPUT,
    "layers": [
        conv(64, 11, stride=4, padding=2), relu(), maxpool(3, stride=2),
        conv(192, 5, padding=2), relu(), maxpool(3, stride=2),
        conv(384, 3, padding=1), relu(),
        conv(256, 3, padding=1), relu(),
        conv(256, 3, padding=1), relu(), maxpool(3, stride=2),
        adaptive_avgpool(6),
        flatten(),
        dropout(0.5), linear(4096), relu(),
        dropout(0.5), linear(4096), relu(),
        linear(1000),
    ],
}
