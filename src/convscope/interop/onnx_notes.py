"""What an ONNX file's exporter changed about the model's parameters, in one line.

torch's TorchScript exporter with constant folding merges each eval-mode batch norm into
the convolution before it: the convolution's weight becomes w·γ/√(σ²+ε) and it gains a bias
β − μ·γ/√(σ²+ε). The batch norm's 2·C parameters (γ, β) disappear and C biases appear, so
the file holds C fewer parameters than the module per folded batch norm when the convolution
had no bias of its own (as before almost every batch norm in torchvision), and 2·C fewer when
it had one (VGG's ``*_bn`` models): its bias is folded in too. The file does not record which,
so the note gives both numbers.

A folded convolution is recognised by its bias's name: a module's own bias is named after its
path (``features.0.bias``); a bias the exporter computed is not (the TorchScript exporter names
it after the node, ``onnx::Conv_498``; the dynamo exporter after the weight,
``conv1.weight_bias``).
"""
from __future__ import annotations

import re
from typing import Optional, Tuple


def _computed(name: str) -> bool:
    return not name.endswith(".bias")


def folded_batch_norms(proto) -> Tuple[int, int]:
    """(number of convolutions with a folded batch norm, parameters the module had beyond the
    file's: one per output channel of each)."""
    shapes = {t.name: tuple(t.dims) for t in proto.graph.initializer}
    count = extra = 0
    for node in proto.graph.node:
        if node.op_type != "Conv" or len(node.input) < 3 or not node.input[2]:
            continue
        weight = node.input[1]
        if weight in shapes and _computed(node.input[2]):
            count += 1
            extra += int(shapes[weight][0])
    return count, extra


def _from_dynamo(proto) -> bool:
    """torch's dynamo exporter names nodes ``node_Conv_0``; the TorchScript one ``/conv1/Conv``."""
    return bool(proto.graph.node) and not any(n.name.startswith("/") for n in proto.graph.node)


#: torch's dynamo exporter records the aten call of each node: ``... = call_function[target=
#: torch.ops.aten.conv2d.default](args = (%x, %p_conv_weight, None, [1, 1], ...)`` — the third
#: argument is the module's bias (None when it has none).
_FX_CALL = re.compile(r"args = \(([^,()]+), ([^,()]+)(?:, ([^,()\[\]]+))?")


def _module_bias(node) -> Optional[bool]:
    """Whether the module behind a dynamo-exported Conv/Gemm had a bias (from the node's
    ``pkg.torch.onnx.fx_node`` metadata), or None when the file does not say."""
    for prop in node.metadata_props:
        if prop.key == "pkg.torch.onnx.fx_node":
            call = _FX_CALL.search(prop.value)
            if call is None:
                return None
            bias = call.group(3)
            return bias is not None and bias.strip() != "None"
    return None


def dropped_zero_biases(proto) -> Tuple[int, int]:
    """(layers, parameters) of the biases torch's dynamo exporter leaves out because they are
    all zero: a Conv or Gemm on a module's own ``*.weight`` without a bias input whose recorded
    aten call (:func:`_module_bias`) passed a bias. A module without a bias looks the same in
    the graph, so without that record nothing is counted."""
    if not _from_dynamo(proto):
        return 0, 0
    shapes = {t.name: tuple(t.dims) for t in proto.graph.initializer}
    count = params = 0
    for node in proto.graph.node:
        if node.op_type not in ("Conv", "Gemm") or (len(node.input) > 2 and node.input[2]):
            continue
        weight = node.input[1] if len(node.input) > 1 else ""
        if weight.endswith(".weight") and weight in shapes and _module_bias(node):
            attrs = {a.name: a.i for a in node.attribute}
            out = shapes[weight][1] if node.op_type == "Gemm" and not attrs.get("transB", 0) else shapes[weight][0]
            count, params = count + 1, params + int(out)
    return count, params


def accounted_params(proto) -> int:
    """Parameters the original module had beyond the file's, by the two rules above (folded
    convolutions without biases of their own)."""
    return folded_batch_norms(proto)[1] + dropped_zero_biases(proto)[1]


def folded_own_biases(proto) -> int:
    """Parameters to add to :func:`accounted_params` when the folded convolutions had biases of
    their own: one per output channel of each."""
    return folded_batch_norms(proto)[1]


def folding_note(proto) -> Optional[str]:
    """The summary's line about folded batch norms and dropped zero biases, or None."""
    count, extra = folded_batch_norms(proto)
    dropped, zeros = dropped_zero_biases(proto)
    parts = []
    if count:
        parts.append(f"the exporter folded {count:,} batch norms into the convolutions before them (their "
                     f"{2 * extra:,} scale and shift parameters live in those weights and {extra:,} new biases: "
                     f"{extra:,} parameters fewer, or {2 * extra:,} if those convolutions had biases of their own, "
                     "which the file does not record)")
    if dropped:
        parts.append(f"the exporter left out the all-zero biases of {dropped:,} convolution/linear "
                     f"layer{'s' if dropped > 1 else ''} "
                     f"({zeros:,} parameters fewer)")
    if not parts:
        return None
    more = f"{extra + zeros:,}" + (f" (or {2 * extra + zeros:,})" if count else "")
    return f"note: {'; '.join(parts)}; the original module has {more} more parameters than this file"
