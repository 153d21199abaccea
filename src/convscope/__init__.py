"""convscope: a glass-box convolutional neural network engine on NumPy.

>>> import convscope as cs
>>> model = cs.Sequential([cs.layers.Conv2d(32, 5, padding=2), cs.layers.ReLU(),
...                        cs.layers.MaxPool2d(2), cs.layers.Flatten(), cs.layers.Linear(10)])
>>> model.build((3, 32, 32), seed=0)          # doctest: +ELLIPSIS
Sequential(...)
"""
from ._startup import quiet_while_starting as _quiet_while_starting

_quiet_while_starting()  # Ctrl-C during the imports below: exit 130 quietly (command line only)

from . import layers  # noqa: E402
from .errors import ConvscopeError  # noqa: E402
from .gradcheck import gradcheck
from .layers import Concat, Graph, Residual, Sequential
from .spec import from_spec, parse_text

__version__ = "0.1.0"


def __getattr__(name):
    # Heavier subpackages load on first use so `import convscope` stays fast.
    import importlib
    if name in {"analysis", "zoo", "train", "viz", "interop", "ops"}:
        return importlib.import_module(f".{name}", __name__)
    if name == "analyze":
        from .analysis import analyze
        return analyze
    if name == "set_num_threads":
        from .threads import set_num_threads
        return set_num_threads
    raise AttributeError(f"module 'convscope' has no attribute {name!r}")


__all__ = ["layers", "ConvscopeError", "gradcheck", "Sequential", "Concat", "Residual", "Graph",
           "from_spec", "parse_text", "analyze"]
