"""Step-by-step traces: forward and backward of one layer on one small sample, written as
sums term by term, with the engine's own numbers.

>>> from convscope.trace import trace_conv1d
>>> t = trace_conv1d([1, 2, 3], [0.3, 0.5], b=[0], dy=[-0.1, 0.2])   # seed 002
>>> t.to_json()["dw"], t.to_json()["dx"]
([0.3, 0.4], [-0.03, 0.01, 0.1])

Each line is generated from the same index sets the equations in each module's docstring
describe (which input positions a weight touched, which windows read an input), and each
number is checked against the engine's layer in float64 before it is printed. This is the
answer to seed 002: a shared weight's gradient is a sum over every position that used it.
"""
from .conv import trace_conv1d, trace_conv2d
from .linear import trace_linear
from .more import (trace_avgpool2d, trace_batchnorm2d, trace_dropout, trace_relu,
                   trace_softmax_cross_entropy)
from .pool import trace_maxpool2d
from .result import Trace
from .values import parse_values

TRACES = {"conv1d": trace_conv1d, "conv2d": trace_conv2d, "maxpool2d": trace_maxpool2d,
          "linear": trace_linear, "relu": trace_relu, "avgpool2d": trace_avgpool2d,
          "batchnorm2d": trace_batchnorm2d, "softmax_ce": trace_softmax_cross_entropy, "dropout": trace_dropout}

__all__ = ["Trace", "TRACES", "trace_conv1d", "trace_conv2d", "trace_maxpool2d", "trace_linear",
           "trace_relu", "trace_avgpool2d", "trace_batchnorm2d", "trace_softmax_cross_entropy",
           "trace_dropout", "parse_values"]
