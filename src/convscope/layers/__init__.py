"""Layer classes, one module per family.

Each class keeps hyper-parameters and Parameters, states its shape rules, and delegates the
maths to a pure op in :mod:`convscope.ops`. ``registry.LAYER_TYPES`` maps spec ``type`` names
to classes.
"""
from .base import Layer, Parameter
from .containers import Concat, Residual, Sequential
from .registry import LAYER_TYPES
from .conv import *  # noqa: F401,F403
from .pool import *  # noqa: F401,F403
from .dense import *  # noqa: F401,F403
from .activation import *  # noqa: F401,F403
from .norm import *  # noqa: F401,F403
from .shape import *  # noqa: F401,F403
from .gating import *  # noqa: F401,F403
from .layer_norm import *  # noqa: F401,F403
from .branch import *  # noqa: F401,F403
