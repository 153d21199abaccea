"""What an ONNX file's exporter changed about the model's parameters, in one line.

torch's TorchScript exporter with constant folding merges each eval-mode batch norm into
the convolution before it: the convolution's weight becomes w·γ/√(σ²+ε) and it gains a bias
β − μ·γ/√(σ²+ε). The batch norm's 2·C parameters (γ, β) disappear and C biases appear, so
the file holds C fewer parameters than the module per folded batch norm (when the
convolution had no bias of its own, as before every batch norm in torchvision).

A folded convolution is recognised by its weight's name: tensors the exporter computed are
named after the node (``onnx::Conv_497``), a module's own weight after its path
(``features.0.weight``).
"""
from __future__ import annotations

from typing import Optional, Tuple


def _computed(name: str) -> bool:
    return name.startswith("onnx::") or not name.endswith(".weight")


def folded_batch_norms(proto) -> Tuple[int, int]:
    """(number of convolutions with a folded batch norm, parameters the module had beyond the
    file's: one per output channel of each)."""
    shapes = {t.name: tuple(t.dims) for t in proto.graph.initializer}
    count = extra = 0
    for node in proto.graph.node:
        if node.op_type != "Conv" or len(node.input) < 3 or not node.input[2]:
            continue
        weight = node.input[1]
        if weight in shapes and _computed(weight) and _computed(node.input[2]):
            count += 1
            extra += int(shapes[weight][0])
    return count, extra


def folding_note(proto) -> Optional[str]:
    """The summary's line about folded batch norms, or None when the file has none."""
    count, extra = folded_batch_norms(proto)
    if not count:
        return None
    return (f"note: the exporter folded {count:,} batch norms into the convolutions before them; their "
            f"{2 * extra:,} scale and shift parameters live in those weights and {extra:,} new biases, so "
            f"the original module has {extra:,} more parameters than this file")
