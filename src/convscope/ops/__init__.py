"""Pure array functions with no state: each op has a forward and a backward function.

Layers in :mod:`convscope.layers` call these; tests check each against PyTorch and finite
differences. Layout is NCHW (NCL for 1-D) like PyTorch.
"""
