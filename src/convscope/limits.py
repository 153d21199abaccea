"""Budgets: how much a file given by a user may make convscope read, decode or build.

Every limit lives here, and every message that enforces one names it (``limits.NAME``), so a user
who really needs more knows what to change. Sizes declared in a file's header are checked
against these budgets BEFORE anything is allocated or decompressed: a small hostile file can
never make convscope take more than about ``MAX_DECODED_BYTES`` of memory, plus the model.
"""
from __future__ import annotations

from .errors import ConvscopeError

GiB = 1 << 30
MiB = 1 << 20

#: Bytes any one input may decode to (IDX/CIFAR/npz arrays, a checkpoint's arrays, images).
MAX_DECODED_BYTES = 1 * GiB
#: Bytes of one model file with the weights it holds (an ONNX file and its external data). The
#: file must really hold the data its tensors declare, so memory follows the bytes on disk;
#: torchvision's largest CNN, RegNet-Y 128GF, is a 2.6 GB file.
MAX_MODEL_BYTES = 8 * GiB
#: Bytes of a spec file (.json/.yaml) and of a checkpoint's JSON description.
MAX_SPEC_BYTES = 16 * MiB
#: Layers in one model, containers and their children included.
MAX_LAYERS = 10_000
#: Nesting of containers in a spec, and of lists/objects in any JSON document read.
MAX_SPEC_DEPTH = 64
#: YAML aliases (*name) in one spec; anchors are for sharing a block, not for exponential growth.
MAX_YAML_ALIASES = 100
#: YAML nodes after aliases are expanded.
MAX_YAML_NODES = 200_000
#: Values of one parameter or activation tensor a spec may ask for (2**31 float32 = 8 GiB).
MAX_TENSOR_VALUES = 1 << 31
#: Pixels of one image (width x height); larger images are refused before decoding. A 108 MP
#: phone photo passes; decoded it is at most 480 MB, and it is reduced before any float copy.
MAX_IMAGE_PIXELS = 120_000_000
#: Side of the images a checkpoint's preprocessing may ask for.
MAX_IMAGE_SIDE = 4096
#: Values in one `convscope trace` operand, and terms a trace may print.
MAX_TRACE_VALUES = 4096
MAX_TRACE_CHARS = 256 * 1024
MAX_TRACE_TERMS = 200_000
#: Characters of the one-line text form.
MAX_TEXT_FORM_CHARS = 10_000
#: Epochs (and warm-up epochs) of one training run.
MAX_EPOCHS = 1_000_000
#: Class names in a checkpoint (labels are class indices below this).
MAX_CLASSES = 100_000
#: Characters of one class name.
MAX_NAME_CHARS = 1_000
#: Epoch rows in history.json.
MAX_HISTORY_ROWS = 1_000_000


def is_finite_number(value, bound: float = 1e300) -> bool:
    """A real JSON number (not a bool), finite, below ``bound`` in size (a many-digit integer is not)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    try:
        return abs(float(value)) < bound
    except OverflowError:
        return False


def exceeded(what: str, value, budget_name: str, unit: str = "") -> ConvscopeError:
    """The one message form: '<what> (<value>) exceeds the <budget> budget (limits.NAME)'."""
    budget = globals()[budget_name]
    return ConvscopeError(f"{what} ({_fmt(value, unit)}) exceeds the {_fmt(budget, unit)} budget "
                          f"(limits.{budget_name})")


def too_deep(what: str) -> ConvscopeError:
    """For a parser that ran out of stack: the document is far deeper than ``MAX_SPEC_DEPTH``."""
    return ConvscopeError(f"{what} is nested deeper than the {MAX_SPEC_DEPTH} levels budget (limits.MAX_SPEC_DEPTH)")


def check(what: str, value, budget_name: str, unit: str = "") -> None:
    """Raise :func:`exceeded` when ``value`` is above the named budget."""
    if value > globals()[budget_name]:
        raise exceeded(what, value, budget_name, unit)


def _fmt(value, unit: str) -> str:
    if unit == "bytes":
        for size, name in ((GiB, "GiB"), (MiB, "MiB")):
            if value >= size:
                return f"{value / size:,.4g} {name}"
        return f"{value:,} bytes"
    return f"{value:,}{(' ' + unit) if unit else ''}"
