"""Importing torchvision in tests (a plain module, not a conftest: tests/hostile has its own
conftest, which its tests import by that name).

``import_torchvision()``: torchvision 0.28 from the package index is a CUDA build whose compiled
ops do not load beside the CPU torch 2.13 ("operator torchvision::nms does not exist"). Its
pure-Python models import once the two operator schemas ``torchvision::nms`` and
``torchvision::qnms`` exist, so define them (once) with torch.library before the import.
Models must be built with ``weights=None``: nothing may be downloaded.
"""
import importlib

_TORCHVISION_LIB = []   # keeps the Library object alive: dropping it would remove the schemas


def import_torchvision():
    """Import and return the ``torchvision`` module; idempotent (the schemas are defined once)."""
    import torch

    if not _op_exists(torch, "nms"):
        lib = torch.library.Library("torchvision", "DEF")
        lib.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
        if not _op_exists(torch, "qnms"):
            lib.define("qnms(Tensor qdets, Tensor scores, float iou_threshold) -> Tensor")
        _TORCHVISION_LIB.append(lib)
    return importlib.import_module("torchvision")


def _op_exists(torch, name):
    try:
        torch._C._dispatch_find_schema_or_throw("torchvision::" + name, "")
        return True
    except RuntimeError:
        return False
