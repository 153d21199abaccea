"""GoogLeNet (Inception v1) as torchvision builds it, without the auxiliary heads
(6,624,904 parameters, 1.50 GMACs).

Source: C. Szegedy et al., "Going Deeper with Convolutions", CVPR 2015, Table 1, input
3×224×224; torchvision.models.googlenet (aux_logits=False at inference), whose model card
lists 6,624,904 parameters and 1.50 GFLOPS (MACs). Differences from the paper, as in
torchvision: every convolution is BasicConv2d = conv without bias + batch norm (eps 0.001) +
ReLU, no local response normalisation, max pools in ceil mode, and the "5×5" branch uses a
3×3 kernel (a known quirk of the torchvision weights, kept so the count matches).
"""
from ._blocks import adaptive_avgpool, concat, conv_bn_relu, dropout, flatten, linear, maxpool

NAME = "googlenet"
INPUT = [3, 224, 224]
PARAMS = 6_624_904
GMACS = 1.50

EPS = 0.001


def basic(out_channels, kernel_size, stride=1, padding=0):
    return conv_bn_relu(out_channels, kernel_size, stride, padding, eps=EPS)


def inception(ch1x1, ch3x3red, ch3x3, ch5x5red, ch5x5, pool_proj) -> dict:
    """Four branches joined on channels: 1×1; 1×1→3×3; 1×1→"5×5" (3×3); 3×3 max pool→1×1."""
    return concat(
        basic(ch1x1, 1),
        basic(ch3x3red, 1) + basic(ch3x3, 3, padding=1),
        basic(ch5x5red, 1) + basic(ch5x5, 3, padding=1),
        [maxpool(3, stride=1, padding=1, ceil_mode=True)] + basic(pool_proj, 1),
    )


SPEC = {
    "name": NAME,
    "source": "Szegedy et al. 2015 (CVPR), Table 1; torchvision.models.googlenet without auxiliary "
              "heads: 6,624,904 parameters, 1.50 GFLOPS (MACs) at 3×224×224",
    "notes": "BasicConv2d = conv(bias=False) + batchnorm(eps=0.001) + relu; the 5×5 branch is 3×3 as "
             "in torchvision",
    "input": INPUT,
    "layers": [
        *basic(64, 7, stride=2, padding=3),
        maxpool(3, stride=2, ceil_mode=True),
        *basic(64, 1),
        *basic(192, 3, padding=1),
        maxpool(3, stride=2, ceil_mode=True),
        inception(64, 96, 128, 16, 32, 32),      # 3a -> 256
        inception(128, 128, 192, 32, 96, 64),    # 3b -> 480
        maxpool(3, stride=2, ceil_mode=True),
        inception(192, 96, 208, 16, 48, 64),     # 4a -> 512
        inception(160, 112, 224, 24, 64, 64),    # 4b -> 512
        inception(128, 128, 256, 24, 64, 64),    # 4c -> 512
        inception(112, 144, 288, 32, 64, 64),    # 4d -> 528
        inception(256, 160, 320, 32, 128, 128),  # 4e -> 832
        maxpool(2, stride=2, ceil_mode=True),
        inception(256, 160, 320, 32, 128, 128),  # 5a -> 832
        inception(384, 192, 384, 48, 128, 128),  # 5b -> 1024
        adaptive_avgpool(1),
        flatten(),
        dropout(0.2),
        linear(1000),
    ],
}
