"""Classic architectures as specs (contract "Zoo").

>>> import convscope as cs
>>> cs.zoo.names()
['lenet5', 'alexnet2012', 'alexnet', 'vgg16', 'googlenet', 'resnet18']
>>> cs.analyze(cs.zoo.load("alexnet")).total_params
61100840

Each entry is a module holding ``SPEC`` (a spec document with ``input``, ``source`` and
``layers``), the published input ``INPUT``, and the published counts it is checked against:
``PARAMS`` (torchvision's total, exact) and ``GMACS`` (the model card's "GFLOPS", which are
multiply-accumulates: our count is within 1 %).
"""
from __future__ import annotations

import copy
import difflib
import importlib
from typing import Dict, List

from ..errors import ConvscopeError

_ENTRIES = ["lenet5", "alexnet2012", "alexnet", "vgg16", "googlenet", "resnet18"]


def names() -> List[str]:
    """The architectures in the zoo, oldest first."""
    return list(_ENTRIES)


def _module(name: str):
    if not isinstance(name, str) or name.lower() not in _ENTRIES:
        close = difflib.get_close_matches(str(name).lower(), _ENTRIES, n=1, cutoff=0.5)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ConvscopeError(f"unknown zoo model {name!r}{hint}; the zoo has {', '.join(_ENTRIES)}")
    return importlib.import_module(f".{name.lower()}", __name__)


def spec(name: str) -> dict:
    """The architecture's spec document (a fresh copy: change it freely)."""
    return copy.deepcopy(_module(name).SPEC)


def load(name: str):
    """The unbuilt model; ``model.build()`` uses the published input shape."""
    from ..spec import from_spec
    return from_spec(spec(name))


def published(name: str) -> Dict[str, object]:
    """What the source reports: ``{"input", "params", "gmacs", "source"}`` (gmacs may be None)."""
    module = _module(name)
    return {"input": list(module.INPUT), "params": module.PARAMS, "gmacs": module.GMACS,
            "source": module.SPEC["source"]}


__all__ = ["names", "spec", "load", "published"]
