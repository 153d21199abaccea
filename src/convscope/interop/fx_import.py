"""PyTorch -> convscope for any ``nn.Module`` whose forward ``torch.fx`` (or, failing that,
``torch.export``: :mod:`.torch_export_import`) can trace: a :class:`Graph`.

How it reads a module:

1. **Trace** with ``torch.fx``. A submodule is a *leaf* (one node, read by its layer type's
   ``from_torch_module``) only when the registry knows its class (``torch_class`` or
   ``torch_module_names`` of a layer type, containers aside); every other module (torchvision's
   BasicBlock, Conv2dNormActivation, SqueezeExcitation, CNBlock, Permute, ...) is traced through.
2. **Run** the traced graph once on a batch of two zeros of ``input_shape`` to learn every
   value: which nodes are tensors (``x.size(0)`` and its arithmetic are plain numbers, folded
   into the shape arguments that use them) and each tensor's shape (a ``view``/``reshape``
   becomes a per-sample :class:`~convscope.layers.Reshape` to the shape it produced).
3. **Map** each tensor node to one graph node: modules by the registry, named by their module
   path (so parameter names equal the state-dict keys), functions and methods (``F.relu``,
   ``torch.cat``, ``operator.add``, ``x.mean``, ``torch.flatten``, ``x.view``, ``transpose``,
   ``permute``, ``chunk``/``split`` and their ``getitem``, ``F.adaptive_avg_pool2d``, ...) by
   :data:`_FUNCTIONS` or, for functions that are a parameterless layer type's functional form
   (``F.hardswish`` for ``Hardswish``, ``torch.sigmoid`` ...), by the registry; a parameter
   multiplied in (ConvNeXt's ``layer_scale``) becomes a :class:`~convscope.layers.LayerScale`
   named after its owner module.
4. **Copy** the state dict (names and shapes must match one to one).

Where fx cannot trace (``if x.shape[-1] > 32:`` on a Proxy), ``torch.export`` records the forward
for the input shape as ATen operators, read the same way (see :mod:`.torch_export_import`); where
neither can (a branch on a tensor's value), one line suggests the TorchScript ONNX route.

Anything that cannot be read is one :class:`~convscope.ConvscopeError` line naming the node (and
the module it ran in) and the nearest supported function (difflib); nothing is returned half-built.
"""
from __future__ import annotations

import difflib
import inspect
from typing import Any, Callable, Dict, List, Optional, Tuple

from .. import layers as L
from ..errors import ConvscopeError, format_shape
from ..layers.base import _check_shape, without_initialisation
from ..layers.graph import INPUT, Graph
from ..layers.registry import LAYER_TYPES
from .torch_import import _Converter, _dtype_of, load_torch_state

_CONTAINERS = ("Sequential", "Concat", "Residual", "Graph")


class _Unsupported(Exception):
    """A function or method with no convscope counterpart (turned into one line by the caller)."""


def _module_names(cls) -> Tuple[str, ...]:
    return tuple(getattr(cls, "torch_module_names", ()))


class _Reader:
    """Per-call state: the traced graph, every node's value, and the graph nodes made so far."""

    def __init__(self, torch, module, shape):
        self.torch, self.module, self.shape = torch, module, shape
        self.converter = _Converter(torch)
        self.simple = _registry_functions()  # per call: types registered later count too
        self.qualified = {name: cls for cls in LAYER_TYPES.values() for name in _module_names(cls)}
        self.layers: Dict[str, Any] = {}      # module path -> layer (a module called twice is shared)
        self.nodes: List[Tuple[str, Any, List[str]]] = []
        self.names: Dict[Any, str] = {}       # fx node -> graph value name ("conv1", "chunk:1")
        self.aliases: Dict[Any, Any] = {}     # contiguous() and friends: fx node -> the node it repeats
        self.groups: Dict[Any, Callable] = {} # torch.export: node of a known module's call -> its reading

    # -- what is a leaf ---------------------------------------------------------------------
    def known(self, module) -> Optional[type]:
        kind = type(module)
        qualified = f"{kind.__module__}.{kind.__qualname__}"
        if qualified in self.qualified:
            return self.qualified[qualified]
        cls = self.converter.exact.get(kind)
        if cls is None and kind.__module__.startswith("convscope"):
            cls = self.converter.by_name.get(kind.__name__)
        if cls is None or cls.torch_class in _CONTAINERS:
            return None
        return cls

    # -- values -----------------------------------------------------------------------------
    def value_name(self, node) -> str:
        node = self.aliases.get(node, node)
        if node not in self.names:
            raise _Unsupported(f"uses {node.name!r}, which is not a tensor convscope follows")
        return self.names[node]

    def per_sample(self, node) -> Tuple[int, ...]:
        return tuple(self.values[node].shape[1:])

    def add(self, fx_node, name: str, layer, inputs) -> None:
        taken = {n for n, _, _ in self.nodes}
        if name in taken:  # a parameterless module called again (ResNet's one relu): a new node
            name = next(f"{name}_{k}" for k in range(1, len(taken) + 2) if f"{name}_{k}" not in taken)
        self.nodes.append((name, layer, [self.value_name(i) for i in inputs]))
        self.names[fx_node] = name


def _is_tensor(torch, value) -> bool:
    return isinstance(value, torch.Tensor)


class _NotTraceable(Exception):
    """torch.fx could not trace the forward (the first line of its error is the message)."""


def _first_line(error: Exception) -> str:
    text = str(error).strip()
    return (text.splitlines()[0] if text else type(error).__name__)[:160]


def _trace(torch, module, reader: _Reader):
    import torch.fx as fx

    class Tracer(fx.Tracer):
        def is_leaf_module(self, m, qualname):
            return reader.known(m) is not None

    try:
        graph = Tracer().trace(module)
    except Exception as error:  # fx raises many kinds (TraceError, TypeError, NotImplementedError...)
        raise _NotTraceable(_first_line(error)) from None
    return fx.GraphModule(module, graph)


def _run(torch, gm, example) -> Dict[Any, Any]:
    import torch.fx as fx
    values: Dict[Any, Any] = {}

    class Recorder(fx.Interpreter):
        def run_node(self, n):
            out = super().run_node(n)
            values[n] = out
            return out

    with torch.no_grad():
        Recorder(gm).run(example)
    return values


def from_torch_graph(module, input_shape) -> Graph:
    """See :func:`convscope.interop.from_torch` (any module torch.fx or torch.export can trace)."""
    import torch
    shape = _check_shape(input_shape)
    reader = _Reader(torch, module, shape)
    dtype = _dtype_of(module, torch)
    example = torch.zeros((2,) + tuple(shape), dtype=torch.float64 if dtype.itemsize == 8 else torch.float32)
    was_training = module.training
    try:
        module.eval()
        try:
            gm = _trace(torch, module, reader)
        except _NotTraceable as fx_error:
            from .torch_export_import import exported_graph
            gm = exported_graph(torch, module, example, reader, str(fx_error))
        try:
            reader.values = _run(torch, gm, example)
        except Exception as error:
            raise ConvscopeError(f"{type(module).__name__} does not run on input_shape {format_shape(shape)} "
                                 f"(batch of 2): {str(error).splitlines()[0][:200]}") from None
    finally:
        module.train(was_training)
    output = None
    for node in gm.graph.nodes:
        try:
            if node.op == "placeholder":
                if reader.names:
                    raise _Unsupported("has a second input; from_torch reads modules with one input")
                reader.names[node] = INPUT
            elif node.op == "output":
                output = node.args[0]
                while isinstance(output, (tuple, list)) and len(output) == 1:  # torch.export's (out,)
                    output = output[0]
            elif node.op == "get_attr":
                continue  # read by the node that uses it (a layer scale), refused elsewhere
            elif not _is_tensor(torch, reader.values[node]) and not _is_pieces(torch, reader.values[node]):
                continue  # sizes and their arithmetic: folded into the arguments that use them
            elif node in reader.groups:  # torch.export: one of the operations of a known module
                reader.groups[node](reader, node)
            elif node.op == "call_module":
                _module_node(reader, gm, node)
            else:
                _function_node(reader, node)
        except _Unsupported as error:
            sep = "" if str(error).startswith(":") else " "
            raise ConvscopeError(f"node {node.name!r} ({_describe(node)}){sep}{error}") from None
    if not hasattr(output, "op") or not _is_tensor(torch, reader.values.get(output)):
        raise ConvscopeError(f"{type(module).__name__}'s forward must return one tensor; "
                             f"it returns {type(reader.values.get(output, output)).__name__}")
    out_name = reader.value_name(output)
    if out_name == INPUT:  # a forward that returns its input: one named pass-through
        reader.nodes.append(("identity", L.Identity(), [INPUT]))
        out_name = "identity"
    model = Graph(nodes=reader.nodes, outputs=[out_name], input_shape=shape)
    try:
        with without_initialisation():  # load_torch_state sets every parameter right below
            model.build(shape, seed=0, dtype=dtype)
    except ConvscopeError as error:
        raise ConvscopeError(f"the converted model does not fit input_shape {format_shape(shape)}: {error}") from None
    load_torch_state(model, module.state_dict(), shape)
    return model


def _is_pieces(torch, value) -> bool:
    return isinstance(value, (tuple, list)) and value and all(_is_tensor(torch, v) for v in value)


def _target_name(target) -> str:
    """``"view"`` for a method, ``"cat"`` for torch.cat, ``"add"`` for aten.add.Tensor."""
    if isinstance(target, str):
        return target
    return getattr(target, "_opname", None) or getattr(target, "__name__", str(target))


def _describe(node) -> str:
    if node.op == "call_module":
        return f"module {node.target}"
    if hasattr(node.target, "_opname"):  # an ATen operator (torch.export)
        return f"operator {node.target}{_inside(node)}"
    target = _target_name(node.target)
    what = f"method .{target}()" if node.op == "call_method" else f"function {target}"
    return what + _inside(node)


def _inside(node) -> str:
    """`` in module act (ELU)``: the innermost module whose forward the operation ran in, if any."""
    stack = [entry for entry in (node.meta.get("nn_module_stack") or {}).values()
             if isinstance(entry, tuple) and entry and entry[0]]
    if not stack:
        return ""
    path, kind = stack[-1][0], stack[-1][-1]
    kind = kind.__name__ if isinstance(kind, type) else str(kind).rpartition(".")[2]
    return f" in module {path} ({kind})"


def _module_node(reader: _Reader, gm, node) -> None:
    sub = gm.get_submodule(node.target)
    cls = reader.known(sub)
    stateful = any(True for _ in sub.parameters()) or any(True for _ in sub.buffers())
    if node.target in reader.layers and stateful:  # a module called twice shares its parameters
        layer = reader.layers[node.target]
    else:
        try:
            layer = cls.from_torch_module(sub, node.target, reader.per_sample(node.args[0]), reader.converter)
        except ConvscopeError as error:
            raise _Unsupported(f": {error}") from None
        reader.layers[node.target] = layer
    if len(node.args) != 1 or node.kwargs:
        raise _Unsupported("is called with more than one argument")
    reader.add(node, node.target, layer, [node.args[0]])


# -- functions and methods -------------------------------------------------------------------

def _args(node, names: Tuple[str, ...], defaults: Dict[str, Any]) -> Dict[str, Any]:
    """Positional and keyword arguments of a call by name (the tensor first, as ``names[0]``)."""
    out = dict(defaults)
    out.update(zip(names, node.args))
    out.update(node.kwargs)
    return out


def _dims(dims, ndim: int) -> Tuple[int, ...]:
    dims = (dims,) if isinstance(dims, int) else tuple(dims)
    return tuple(d % ndim for d in dims)


def _tensors(reader, items) -> List[Any]:
    for item in items:
        if not hasattr(item, "op") or item not in reader.values or not _is_tensor(reader.torch, reader.values[item]):
            raise _Unsupported("mixes a tensor with a constant; convscope merges tensors only")
    return list(items)


def _merge(cls):
    def convert(reader, node):
        return cls(), _tensors(reader, node.args[:2])
    return convert


def _cat(reader, node):
    a = _args(node, ("tensors", "dim"), {"dim": 0})
    ndim = reader.values[node].dim()
    dim = a["dim"] % ndim
    if dim == 0:
        raise _Unsupported("concatenates along the batch axis")
    return L.Cat(dim), _tensors(reader, a["tensors"])


def _reshape(reader, node):
    value = reader.values[node]
    source = reader.values[node.args[0]]
    if value.shape[0] != source.shape[0]:
        raise _Unsupported(f"changes the batch axis ({tuple(source.shape)} -> {tuple(value.shape)})")
    return L.Reshape(tuple(value.shape[1:])), [node.args[0]]


def _flatten(reader, node):
    a = _args(node, ("input", "start_dim", "end_dim"), {"start_dim": 0, "end_dim": -1})
    ndim = reader.values[node.args[0]].dim()
    start, end = a["start_dim"] % ndim, a["end_dim"] % ndim
    if start == 0:
        raise _Unsupported("flattens the batch axis too; use torch.flatten(x, 1)")
    return L.Flatten(start, -1 if end == ndim - 1 else end), [node.args[0]]


def _mean(reader, node):
    a = _args(node, ("input", "dim", "keepdim"), {"dim": None, "keepdim": False})
    ndim = reader.values[node.args[0]].dim()
    if a["dim"] is None or 0 in _dims(a["dim"], ndim):
        raise _Unsupported("averages over the batch axis")
    return L.Mean(_dims(a["dim"], ndim), keepdim=bool(a["keepdim"])), [node.args[0]]


def _transpose(reader, node):
    ndim = reader.values[node.args[0]].dim()
    d0, d1 = _dims(node.args[1:3] if len(node.args) >= 3 else (node.kwargs["dim0"], node.kwargs["dim1"]), ndim)
    if 0 in (d0, d1):
        raise _Unsupported("moves the batch axis")
    return L.Transpose(d0, d1), [node.args[0]]


def _permute(reader, node):
    ndim = reader.values[node.args[0]].dim()
    dims = node.args[1] if len(node.args) == 2 and not isinstance(node.args[1], int) else node.args[1:]
    dims = _dims(node.kwargs.get("dims", dims), ndim)
    if dims[0] != 0:
        raise _Unsupported("moves the batch axis")
    return L.Permute(dims), [node.args[0]]


def _pieces(cls, size_name):
    def convert(reader, node):
        a = _args(node, ("input", size_name, "dim"), {"dim": 0})
        ndim = reader.values[node.args[0]].dim()
        dim = a["dim"] % ndim
        if dim == 0:
            raise _Unsupported("splits the batch axis")
        size = a[size_name]
        return cls(tuple(size) if isinstance(size, (list, tuple)) else size, dim), [node.args[0]]
    return convert


def _adaptive_avg_pool2d(reader, node):
    return L.AdaptiveAvgPool2d(_args(node, ("input", "output_size"), {})["output_size"]), [node.args[0]]


def _max_pool2d(reader, node):
    a = _args(node, ("input", "kernel_size", "stride", "padding", "dilation", "ceil_mode"),
              {"stride": None, "padding": 0, "dilation": 1, "ceil_mode": False})
    if a.get("return_indices"):
        raise _Unsupported("returns indices")
    return L.MaxPool2d(a["kernel_size"], a["stride"] or None, a["padding"], a["dilation"], a["ceil_mode"]), \
        [node.args[0]]


def _avg_pool2d(reader, node):
    a = _args(node, ("input", "kernel_size", "stride", "padding", "ceil_mode", "count_include_pad",
                     "divisor_override"),
              {"stride": None, "padding": 0, "ceil_mode": False, "count_include_pad": True, "divisor_override": None})
    if a["divisor_override"] is not None:
        raise _Unsupported("uses divisor_override")
    return L.AvgPool2d(a["kernel_size"], a["stride"] or None, a["padding"], a["ceil_mode"],
                       a["count_include_pad"]), [node.args[0]]


def _dropout(reader, node):
    a = _args(node, ("input", "p", "training"), {"p": 0.5})
    return L.Dropout(a["p"]), [node.args[0]]


def _hardtanh(reader, node):
    a = _args(node, ("input", "min_val", "max_val"), {"min_val": -1.0, "max_val": 1.0})
    if (a["min_val"], a["max_val"]) != (0.0, 6.0):
        raise _Unsupported(f"clamps to [{a['min_val']}, {a['max_val']}]; convscope has relu6 (hardtanh 0..6)")
    return L.ReLU6(), [node.args[0]]


def _gelu(reader, node):
    return L.GELU(_args(node, ("input", "approximate"), {"approximate": "none"})["approximate"]), [node.args[0]]


def _pad(reader, node):
    a = _args(node, ("input", "pad", "mode", "value"), {"mode": "constant", "value": None})
    if a["mode"] != "constant":
        raise _Unsupported(f"pads in mode {a['mode']!r}; convscope pads with a constant")
    return L.Pad(tuple(a["pad"]), a["value"] or 0.0), [node.args[0]]


def _constant_pad(reader, node):  # aten.constant_pad_nd(input, pad, value=0): F.pad's constant mode
    a = _args(node, ("input", "pad", "value"), {"value": 0.0})
    return L.Pad(tuple(a["pad"]), a["value"] or 0.0), [node.args[0]]


def _mul(reader, node):
    params = [a for a in node.args[:2] if hasattr(a, "op") and a.op == "get_attr"]
    if len(params) == 1:  # ConvNeXt's `self.layer_scale * x`: a parameter (C, 1, 1) times the map
        param = params[0]
        other = node.args[1] if node.args[0] is param else node.args[0]
        owner, _, local = param.target.rpartition(".")
        if local != "layer_scale":
            raise _Unsupported(f"multiplies by the parameter {param.target!r}; convscope reads a "
                               "parameter product only as a layer_scale")
        if not owner:
            raise _Unsupported(f"multiplies by the model's own parameter {param.target!r}; convscope names a "
                               "layer_scale after the submodule that holds it: move it into one")
        layer = reader.layers.get(owner) or L.LayerScale()
        reader.layers[owner] = layer
        return (layer, owner), [other]
    return L.Mul(), _tensors(reader, node.args[:2])


def _getitem(reader, node):
    source, index = node.args
    if not _is_pieces(reader.torch, reader.values.get(source)) or not isinstance(index, int):
        raise _Unsupported("indexes a tensor; convscope reads getitem only of chunk/split pieces")
    return None, f"{reader.value_name(source)}:{index % len(reader.values[source])}"


#: Functions and methods (by name: ``torch.cat``, ``operator.add``, ``x.view``) and their reading:
#: ``(reader, fx node) -> (layer, input nodes)``. Parameterless layer types whose functional
#: form is ``F.<torch_class.lower()>`` (relu, sigmoid, hardswish, silu, ...) come from the registry.
_FUNCTIONS: Dict[str, Callable] = {
    "add": _merge(L.Add), "iadd": _merge(L.Add), "add_": _merge(L.Add),
    "mul": _mul, "imul": _mul, "mul_": _mul,
    "cat": _cat, "concat": _cat, "flatten": _flatten, "view": _reshape, "reshape": _reshape,
    "mean": _mean, "transpose": _transpose, "permute": _permute,
    "chunk": _pieces(L.Chunk, "chunks"), "split": _pieces(L.Split, "split_size_or_sections"),
    "split_with_sizes": _pieces(L.Split, "split_size_or_sections"), "constant_pad_nd": _constant_pad,
    "adaptive_avg_pool2d": _adaptive_avg_pool2d, "max_pool2d": _max_pool2d, "avg_pool2d": _avg_pool2d,
    "dropout": _dropout, "hardtanh": _hardtanh, "gelu": _gelu, "pad": _pad, "getitem": _getitem,
}
#: Methods that return their input's values unchanged (a view in the same layout).
_PASS = {"contiguous", "clone", "detach", "alias"}


def _registry_functions() -> Dict[str, type]:
    """``relu`` -> ReLU, ``hardswish`` -> Hardswish, ...: layer types without constructor arguments
    whose torch class has a functional form of its lower-cased name."""
    out = {}
    for cls in LAYER_TYPES.values():
        if cls.torch_class and cls.torch_class not in _CONTAINERS:
            params = list(inspect.signature(cls.__init__).parameters.values())[1:]
            if all(p.default is not inspect.Parameter.empty for p in params):
                out[cls.torch_class.lower()] = cls
    return out


def _function_node(reader: _Reader, node) -> None:
    name = _target_name(node.target)
    if name in _PASS:
        reader.aliases[node] = reader.aliases.get(node.args[0], node.args[0])
        return
    simple = reader.simple
    base = name.rstrip("_")
    if name in _FUNCTIONS:
        layer, inputs = _FUNCTIONS[name](reader, node)
    elif base in simple and base not in _FUNCTIONS:
        extra = [a for a in list(node.args[1:]) + [v for k, v in node.kwargs.items() if k != "inplace"]
                 if not isinstance(a, bool)]
        if extra:
            raise _Unsupported(f"has arguments {extra!r:.60} that convscope's {simple[base].type_name} does not take")
        layer, inputs = simple[base](), [node.args[0]]
    else:
        known = sorted(set(_FUNCTIONS) | set(simple) | _PASS)
        near = difflib.get_close_matches(name, known, n=1, cutoff=0.0)
        raise _Unsupported(f"has no convscope counterpart; nearest supported: {near[0] if near else 'none'} "
                           f"(supported: {', '.join(known)})")
    if layer is None:  # getitem of a piece: a name, not a node
        reader.names[node] = inputs
        return
    if isinstance(layer, tuple):  # a named layer (a parameter's owner)
        layer, name = layer
        reader.add(node, name, layer, inputs)
        return
    reader.add(node, node.name, layer, inputs)
