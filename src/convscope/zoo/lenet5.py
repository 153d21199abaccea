"""LeNet-5 in its common modern form (61,706 parameters).

Source: Y. LeCun, L. Bottou, Y. Bengio, P. Haffner, "Gradient-based learning applied to
document recognition", Proc. IEEE 86(11), 1998, Fig. 2, input 1×32×32.

The common modern form keeps the paper's layer sizes (C1: 6 maps 5×5, S2, C3: 16 maps 5×5,
S4, C5/F5: 120, F6: 84, output 10) and replaces the rest: full C3 connections instead of
the paper's partial table, max pooling instead of trainable subsampling, ReLU instead of the
scaled tanh, and a 10-way linear output instead of RBF units. Count:
(1·5·5 + 1)·6 + (6·5·5 + 1)·16 + (400 + 1)·120 + (120 + 1)·84 + (84 + 1)·10
= 156 + 2,416 + 48,120 + 10,164 + 850 = 61,706.
"""
from ._blocks import conv, flatten, linear, maxpool, relu

NAME = "lenet5"
INPUT = [1, 32, 32]
PARAMS = 61_706
GMACS = None  # the paper gives no operation count; ours is 0.416 MMACs per image

SPEC = {
    "name": NAME,
    "source": "LeCun et al. 1998, Proc. IEEE 86(11), Fig. 2; the common modern form (full C3, max "
              "pooling, ReLU, linear output): 61,706 parameters",
    "notes": "input 1×32×32 as published; the paper's own variant (partial C3 table, RBF output) differs",
    "input": INPUT,
    "layers": [
        conv(6, 5), relu(), maxpool(2),
        conv(16, 5), relu(), maxpool(2),
        flatten(),
        linear(120), relu(),
        linear(84), relu(),
        linear(10),
    ],
}
