"""AlexNet as the 2012 paper builds it, the network the textbook questions count on.

Source: A. Krizhevsky, I. Sutskever, G. E. Hinton, "ImageNet Classification with Deep
Convolutional Neural Networks", NIPS 2012, section 3 and figure 2; input 3×227×227 (the paper
writes 224×224, but 96 filters 11×11 at stride 4 give 55×55 only from 227: ⌊(227 − 11)/4⌋ + 1
= 55, the size CS231n and the Caffe reference model use).

Layers: conv1 96 filters 11×11 stride 4 → 55×55×96, ReLU, local response normalisation
(n = 5, k = 2, α = 1e-4, β = 0.75), overlapping max pooling 3/2 → 27×27; conv2 256 filters 5×5,
padding 2, in two groups (the paper's two GPUs: each filter sees the 48 channels of its own
GPU), ReLU, LRN, pool → 13×13; conv3 384 3×3 (sees both GPUs); conv4 384 3×3 and conv5 256
3×3 in two groups; pool → 256×6×6 = 9,216 → 4,096 → 4,096 → 1,000 with dropout 0.5 before the
first two fully connected layers.

How it differs from torchvision's ``alexnet`` (the zoo's other entry, 61,100,840 parameters):
torchvision follows Krizhevsky's 2014 "one weird trick" single-tower variant: 64 filters in
conv1 on a 224×224 input (padding 2), 192-384-256-256 filters afterwards, no LRN and no groups,
and an adaptive average pool before the classifier.

Counts (checked in tests/test_zoo.py): conv1 96·3·11·11 + 96 = 34,944; conv2 (96/2)·5·5·256 +
256 = 307,456; conv3 885,120; conv4 663,936; conv5 442,624; fc6 (9,216 + 1)·4,096 =
37,752,832; fc7 16,781,312; fc8 4,097,000; total 60,965,224 parameters, 724,406,816 MACs.
The paper's own "60 million parameters" rounds this total. LRN's α is stored in PyTorch's
convention (divided by the window size n), so the paper's α = 1e-4 is ``alpha = 5e-4`` here.
"""
from ._blocks import conv, dropout, flatten, linear, lrn, maxpool, relu

NAME = "alexnet2012"
INPUT = [3, 227, 227]
PARAMS = 60_965_224
GMACS = None  # the paper states no operation count; ours is 0.724 GMACs

_LRN = lrn(5, alpha=5 * 1e-4, beta=0.75, k=2.0)

SPEC = {
    "name": NAME,
    "source": "Krizhevsky, Sutskever & Hinton 2012, \"ImageNet Classification with Deep Convolutional "
              "Neural Networks\" (NIPS), section 3 and figure 2: 60,965,224 parameters at 3×227×227 "
              "(96 filters 11×11 stride 4, LRN, overlapping pooling, two-GPU groups in conv2/4/5); "
              "torchvision's alexnet is instead the 2014 single-tower variant: 64 filters, 224 input, "
              "no LRN, no groups",
    "input": INPUT,
    "layers": [
        conv(96, 11, stride=4), relu(), _LRN, maxpool(3, stride=2),
        conv(256, 5, padding=2, groups=2), relu(), _LRN, maxpool(3, stride=2),
        conv(384, 3, padding=1), relu(),
        conv(384, 3, padding=1, groups=2), relu(),
        conv(256, 3, padding=1, groups=2), relu(), maxpool(3, stride=2),
        flatten(),
        dropout(0.5), linear(4096), relu(),
        dropout(0.5), linear(4096), relu(),
        linear(1000),
    ],
}
