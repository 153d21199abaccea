"""The small core every layer shares: :class:`Parameter` and :class:`Layer`.

A layer is bookkeeping around a pure op in :mod:`convscope.ops`. It knows

* its hyper-parameters (constructor arguments, PyTorch's names and defaults),
* its *shape rules*, which need no weights: :meth:`Layer.output_shape`,
  :meth:`Layer.param_shapes`, :meth:`Layer.buffer_shapes`, :meth:`Layer.macs` and
  :meth:`Layer.window` (for receptive fields). Analysis calls only these.
* its state once built: Parameters (learned) and buffers (running statistics),
* how to run forward and backward, keeping exactly what backward needs from the last
  forward pass and freeing it afterwards.

Shapes passed to the rules are per-sample (no batch dimension), e.g. ``(3, 32, 32)``.
"""
from __future__ import annotations

import contextlib
import contextvars
import inspect
from typing import Any, Callable, ClassVar, ContextManager, Dict, Iterator, List, Optional, Tuple

import numpy as np

from ..errors import ConvscopeError
from ..ops.workspace import Budget, Workspace

Shape = Tuple[int, ...]


class Parameter:
    """A learned array. ``value`` is the live array the layer computes with; ``grad`` has the
    same shape and dtype and is overwritten (never accumulated) by each backward pass."""

    __slots__ = ("name", "_value", "grad")

    def __init__(self, name: str, value: np.ndarray):
        self.name = name
        self._value = value
        # np.zeros (calloc) leaves the pages untouched until a backward writes them: building
        # or importing a 500 MB model does not write 500 MB of zeros (zeros_like does).
        self.grad = np.zeros(np.shape(value), dtype=np.asarray(value).dtype)

    @property
    def value(self) -> np.ndarray:
        return self._value

    @value.setter
    def value(self, new) -> None:
        # Replacing the array is allowed (the layer computes with whatever is here), but only with
        # one of the same shape and a real floating dtype: a (1,) bias would broadcast silently.
        new = np.asarray(new)
        if new.shape != self._value.shape or new.dtype.kind != "f":
            raise ConvscopeError(f"parameter {self.name!r} must stay a floating-point array of shape "
                                 f"{self._value.shape}, got {new.dtype} {new.shape}; update it in place "
                                 f"(p.value[...] = ...) or load a matching state dict")
        self._value = new

    @property
    def shape(self) -> Shape:
        return self.value.shape

    @property
    def size(self) -> int:
        return int(self.value.size)

    def __repr__(self) -> str:
        return f"Parameter({self.name!r}, shape={self.value.shape}, dtype={self.value.dtype})"


def _as_generator(seed) -> np.random.Generator:
    if isinstance(seed, np.random.Generator):
        return seed
    return np.random.default_rng(seed)


@contextlib.contextmanager
def _flag_set(flag: "contextvars.ContextVar[bool]") -> Iterator[None]:
    """``flag`` is True inside the block (for this thread or task), as it was after."""
    token = flag.set(True)
    try:
        yield
    finally:
        flag.reset(token)


#: Set by :func:`keeping_caches`: inference-mode forward passes keep their backward caches too.
_KEEP_CACHES: "contextvars.ContextVar[bool]" = contextvars.ContextVar("convscope_keep_caches", default=False)


def keeping_caches() -> ContextManager[None]:
    """Inside the block, ``forward(x, train=False)`` computes and keeps what backward needs
    (window matrices, masks, argmax indices), as a training pass does. Scoped to the
    thread or task; used to replay an inference pass when backward follows it."""
    return _flag_set(_KEEP_CACHES)


#: True while an inference pass runs below its outermost forward call (see Layer.forward).
_INSIDE_INFERENCE: "contextvars.ContextVar[bool]" = contextvars.ContextVar("convscope_inside_inference",
                                                                          default=False)


#: Set by :func:`without_initialisation`: built parameters start as zeros, not random values.
_SKIP_INIT: "contextvars.ContextVar[bool]" = contextvars.ContextVar("convscope_skip_init", default=False)


def without_initialisation() -> ContextManager[None]:
    """Inside the block, ``build`` gives every parameter zeros instead of drawing its random
    initial values: for importers that put a file's weights into every parameter right after
    (drawing 125 M uniform numbers costs more than reading a 500 MB file). Buffers and the
    seeds of random layers (dropout) are set as usual."""
    return _flag_set(_SKIP_INIT)


def inside_inference() -> bool:
    """Whether an inference pass of an outer layer is running (see Layer._forward_recording)."""
    return _INSIDE_INFERENCE.get()


def keeps_caches(train: bool) -> bool:
    """Whether a forward pass with this ``train`` flag must compute its backward cache."""
    return bool(train) or _KEEP_CACHES.get()


class _Replay:
    """What an inference pass (``train=False``) keeps instead of a backward cache: a reference
    to its input, no copy and nothing computed, held by the outermost layer (the model) only,
    so the intermediate maps are freed as the pass goes. A backward after it (the gradients of
    the inference-mode function: saliency maps, gradcheck in eval mode) first re-runs that
    forward with caches; a plain inference pass pays nothing for backward."""

    __slots__ = ("x", "train")

    def __init__(self, x: np.ndarray, train: bool):
        self.x, self.train = x, train


class Layer:
    """Base class. Subclasses set ``type_name`` (the spec's ``type``) and implement
    ``output_shape`` and ``_forward``/``_backward``; layers with weights add
    ``param_shapes`` and ``fan_in`` (or override ``init_parameters``)."""

    type_name: str = ""
    #: True for layers whose forward differs between training and inference.
    has_train_mode: bool = False
    #: True for layers whose training forward draws random numbers (dropout, stochastic
    #: depth): finite differences of such a forward are meaningless, so checks use eval mode.
    random_in_training: bool = False
    #: How closely the PyTorch counterpart agrees in float64 (relative and absolute). Looser
    #: only where torch itself rounds: nn.Hardsigmoid's backward multiplies by 1/6 as a
    #: float32 constant even in float64, so its dL/dx agrees to about 3e-8, not 1e-15.
    torch_tolerance: float = 1e-9

    # ----- the declaration protocol (docs/adding-a-layer.md) --------------------------------
    # Analysis, pictures and exchange loop over the registry and call these hooks; they keep no
    # per-type tables. A hook without a sensible default raises UndeclaredHook naming the type.
    #: Diagram colour family: conv, pool, linear, activation, norm, shape, join or container.
    family: ClassVar[Optional[str]] = None
    #: viz.filters may draw this layer's ``weight`` as filters.
    has_filters: ClassVar[bool] = False
    #: Stage diagrams fold this layer into the box above; None: fold activations and norms.
    diagram_fold: ClassVar[Optional[bool]] = None
    #: torch.nn class name of a one-to-one counterpart whose arguments are this constructor's.
    torch_class: ClassVar[Optional[str]] = None
    #: Qualified names of further torch module classes (outside torch.nn, e.g. torchvision's) that
    #: ``from_torch`` reads as this type with ``from_torch_module`` instead of tracing their forward.
    torch_module_names: ClassVar[Tuple[str, ...]] = ()
    #: ONNX op type of a one-to-one, attribute-free counterpart.
    onnx_op: ClassVar[Optional[str]] = None
    #: Inputs taken as a graph node: 1, or None for "one or more" (merge layers).
    arity: ClassVar[Optional[int]] = 1
    #: Children run one after another on one input (Sequential). A container whose children
    #: each read the container's input (branches) leaves it False.
    is_chain: ClassVar[bool] = False

    @property
    def passes_input(self) -> bool:
        """True when the input itself joins the output beside the children (a residual's
        identity shortcut): the receptive field and the diagram include it."""
        return False

    def __init__(self):
        self.input_shape: Optional[Shape] = None  # per-sample, set by build
        self.dtype = np.dtype(np.float32)
        self._params: Dict[str, Parameter] = {}
        self._buffers: Dict[str, np.ndarray] = {}
        self._cache = None
        self._input_grad = True  # False during a backward whose caller does not need dL/dx
        self._workspace: Optional[Workspace] = None

    # ----- shape rules (pure: no weights needed) --------------------------------------------
    def output_shape(self, input_shape: Shape) -> Shape:
        """Per-sample output shape for a per-sample input shape; raises ConvscopeError if the
        input does not fit."""
        raise NotImplementedError

    def param_shapes(self, input_shape: Shape) -> Dict[str, Shape]:
        """Learned arrays this layer would hold for ``input_shape``: {local name: shape}."""
        return {}

    def buffer_shapes(self, input_shape: Shape) -> Dict[str, Shape]:
        """Non-learned state (running statistics): {local name: shape}."""
        return {}

    def macs(self, input_shape: Shape) -> int:
        """Multiply-accumulates of one forward pass for one sample (conv and linear only)."""
        return 0

    def window(self, input_shape: Shape):
        """How the layer maps spatial positions, for receptive fields.

        ``None``: position-wise (output position i sees input position i);
        a tuple of ``(k, s, p_lo, d)`` per spatial axis: a sliding window;
        ``"global"``: every output sees the whole input (flatten, linear, global pooling).
        """
        return None

    def children(self) -> List[Tuple[str, "Layer"]]:
        """Sub-layers with their local names (containers only)."""
        return []

    # ----- declared per type (see the class attributes above) -------------------------------
    def other_ops(self, input_shape: Shape, output_shape: Shape) -> Dict[str, int]:
        """Non-MAC operations of one forward pass for one sample, by category of
        :data:`convscope.analysis.counting.CATEGORIES` (bias adds of layers with MACs are counted
        generically). Every type declares it, ``{}`` when it computes nothing else."""
        raise UndeclaredHook(self, "other_ops(input_shape, output_shape)",
                             "return its non-MAC operations per sample, {} for none")

    def shape_derivation(self, input_shape: Shape, output_shape: Shape) -> Optional[List[str]]:
        """Lines explaining the output shape; None: the generic line."""
        return None

    def param_derivation(self, row) -> Optional[List[str]]:
        """Lines explaining the parameter count of an analysis row; None: the generic sum."""
        return None

    def mac_derivation(self, row) -> Optional[List[str]]:
        """Lines explaining the MAC count of an analysis row; None: the layer's rule, stated."""
        return None

    def diagram_join(self, name: str) -> Optional[Dict[str, Any]]:
        """Containers that fork and join: ``{"word": label, "columns": [(name prefix, layers)],
        "tooltip": text}``, drawn side by side and joined in one box (an identity lane is added
        when :attr:`passes_input`). None for leaves and chains."""
        return None

    def torch_desc(self, path: str):
        """The PyTorch counterpart of this *built* layer (:class:`convscope.interop.torch_export.
        TorchDesc`). Default: ``torch_class`` with this constructor's arguments."""
        from ..interop.torch_export import TorchDesc, no_torch_counterpart
        if self.torch_class is None:
            raise no_torch_counterpart(self, path)
        return TorchDesc(self.torch_class, dict(self.config()))

    @classmethod
    def from_torch_module(cls, module, path: str, input_shape: Shape, reader=None) -> "Layer":
        """This layer type from its torch counterpart (an instance of ``torch_class``) at ``path``
        on a per-sample ``input_shape``; containers read their children with ``reader``
        (:mod:`convscope.interop.torch_import`). Default: the constructor's arguments read from
        the module's attributes of the same names."""
        sig = inspect.signature(cls.__init__)
        kwargs = {name: getattr(module, name) for name in list(sig.parameters)[1:] if hasattr(module, name)}
        return cls(**kwargs)

    def to_onnx(self, g, inputs: List[str], path: str) -> List[str]:
        """Emit this built layer's ONNX node(s) with the builder ``g``
        (:mod:`convscope.interop.onnx_export`) reading ``inputs``; return the output names.
        Default: one ``onnx_op`` node without attributes."""
        if self.onnx_op is None:
            raise g.refuse(path, self, f"convscope has no ONNX form for {self.type_name!r}")
        return [g.node(self.onnx_op, list(inputs), path)]

    @classmethod
    def from_onnx_attributes(cls, attributes: Dict[str, Any]) -> "Layer":
        """This layer from the attributes of its ``onnx_op`` node (the ONNX importer's
        one-to-one table). Default: no attributes, ``cls()``."""
        if attributes:
            raise ConvscopeError(f"has attributes ({', '.join(sorted(attributes))}); convscope reads "
                                 f"{cls.onnx_op} as {cls.type_name} without any")
        return cls()

    @classmethod
    def from_spec_entry(cls, kwargs: Dict[str, Any], path: str, parse) -> "Layer":
        """This layer from its spec entry's keys (``type`` removed); ``parse`` is the spec
        reader (:class:`convscope.spec.document.EntryParser`): ``parse.construct`` checks the
        keys against the constructor, ``parse.layers`` reads a nested list of layers."""
        return parse.construct(cls, kwargs, path)

    @classmethod
    def examples(cls) -> List[Tuple["Layer", Shape]]:
        """Small unbuilt instances with a per-sample input shape, non-default arguments
        included, for the conformance suite (tests/test_conformance.py)."""
        raise UndeclaredHook(cls, "examples()", "return [(instance, per-sample input shape), ...]")

    # ----- building -------------------------------------------------------------------------
    def build(self, input_shape, seed=0, dtype=np.float32) -> "Layer":
        """Allocate parameters for a per-sample ``input_shape`` (no batch dimension).

        ``seed`` is an int or a ``numpy.random.Generator``; the same seed gives the same weights.
        """
        shape = _check_shape(input_shape)
        self._build(shape, _as_generator(seed), np.dtype(dtype))
        self._name_parameters("")
        self._give_workspaces(Budget())
        return self

    @property
    def workspace(self) -> Workspace:
        """This layer's scratch buffers, passed to its ops and reused across calls (see
        :mod:`convscope.ops.workspace`). The layers of a built model share one byte
        :class:`~convscope.ops.workspace.Budget`; a layer used alone gets its own."""
        ws = getattr(self, "_workspace", None)
        if ws is None:
            ws = self._workspace = Workspace()
        return ws

    def _give_workspaces(self, budget: Budget) -> None:
        """A workspace of its own for this layer and every sub-layer, all under ``budget``."""
        self._workspace = Workspace(budget)
        for _, child in self.children():
            child._give_workspaces(budget)

    def _build(self, input_shape: Shape, rng: np.random.Generator, dtype: np.dtype) -> Shape:
        output = self.output_shape(input_shape)  # validates before anything is allocated
        _check_sizes(self, input_shape)
        self.input_shape = input_shape
        self.dtype = dtype
        if _SKIP_INIT.get():
            values = {name: np.zeros(shape, dtype=dtype) for name, shape in self.param_shapes(input_shape).items()}
        else:
            values = self.init_parameters(input_shape, rng)
        self._params = {name: Parameter(name, np.ascontiguousarray(v, dtype=dtype))
                        for name, v in values.items()}
        self._buffers = {name: np.asarray(v) for name, v in self.init_buffers(input_shape).items()}
        self._cache = None
        return output

    def fan_in(self, input_shape: Shape) -> int:
        """Inputs feeding one output unit; sets the default initialisation's scale."""
        return 1

    def init_parameters(self, input_shape: Shape, rng: np.random.Generator) -> Dict[str, np.ndarray]:
        """Default initialisation, PyTorch's for conv and linear layers: every parameter
        uniform in ±1/sqrt(fan_in). (Kaiming-uniform with a=sqrt(5) reduces to this bound.)"""
        bound = 1.0 / np.sqrt(max(self.fan_in(input_shape), 1))
        return {name: rng.uniform(-bound, bound, size=shape)
                for name, shape in self.param_shapes(input_shape).items()}

    def init_buffers(self, input_shape: Shape) -> Dict[str, np.ndarray]:
        return {name: np.zeros(shape, dtype=self.dtype) for name, shape in self.buffer_shapes(input_shape).items()}

    def _name_parameters(self, prefix: str) -> None:
        for local, p in self._params.items():
            p.name = prefix + local
        for name, child in self.children():
            child._name_parameters(f"{prefix}{name}.")

    @property
    def built(self) -> bool:
        return self.input_shape is not None

    # ----- running --------------------------------------------------------------------------
    def forward(self, x: np.ndarray, train: bool = False) -> np.ndarray:
        """Compute the output for a batch ``x`` of shape ``(N, *input_shape)``."""
        x = self._check_input(x)
        if train and x.shape[0] == 0:  # backward would have nothing to average over
            raise ConvscopeError(f"{self.type_name}: a training forward pass needs at least one sample, got "
                                 "an empty batch")
        return self._forward_recording(x, train, self._forward)

    def _forward_recording(self, x: np.ndarray, train: bool, run) -> np.ndarray:
        """``run(x, train)``, recording what a backward will need. A training pass (or one inside
        :func:`keeping_caches`) keeps its caches as ``run`` sets them. An inference pass keeps
        none: the outermost layer of the pass (the model) keeps a reference to its input
        (:class:`_Replay`) and every layer below it keeps nothing, so each intermediate map is
        freed as soon as the next layer has read it."""
        # Every op's transient scratch is freed when this layer's call ends (workspace.py).
        with self.workspace.budget.transient_scope():
            if keeps_caches(train):
                return run(x, train)
            if _INSIDE_INFERENCE.get():
                y = run(x, train)
                self._cache = None
                return y
            token = _INSIDE_INFERENCE.set(True)   # not _flag_set: its generator costs 2-6 µs a call
            try:
                y = run(x, train)
            finally:
                _INSIDE_INFERENCE.reset(token)
        self._cache = _Replay(x, train)
        return y

    def _replay_for_backward(self) -> None:
        """When the last forward was an inference pass, run it again keeping caches, so that a
        backward gives the gradients of the inference-mode function (saliency, eval gradcheck)."""
        if isinstance(self._cache, _Replay):
            replay = self._cache
            with keeping_caches():
                self.forward(replay.x, replay.train)

    __call__ = forward

    def backward(self, dy: np.ndarray, input_grad: bool = True) -> np.ndarray:
        """Given dL/dy for the last forward pass, set every Parameter.grad and return dL/dx.

        With ``input_grad=False`` a layer may skip computing dL/dx (training never needs the
        gradient of the data itself) and returns None, as PyTorch does for inputs that do
        not require grad; layers that cannot skip it still return it.
        """
        if self._cache is None:
            raise ConvscopeError(f"{self.type_name}: backward called before forward; "
                                 "run forward(x, train=True) first")
        dy = np.asarray(dy)
        expected = self._cache_output_shape()
        if expected is not None and dy.shape != expected:
            raise ConvscopeError(f"{self.type_name}: backward expects dy of shape {expected} "
                                 f"(the last output's), got {dy.shape}")
        self._replay_for_backward()
        self._input_grad = input_grad
        with self.workspace.budget.transient_scope():
            dx = self._backward(dy.astype(self.dtype, copy=False))
        self._cache = None
        return dx

    def _forward(self, x: np.ndarray, train: bool) -> np.ndarray:
        raise NotImplementedError

    def inference_step(self, x_shape: Tuple[int, ...]) -> Optional[Callable[[np.ndarray], np.ndarray]]:
        """For a model's inference plan: a function ``x -> y`` computing exactly what
        ``forward(x, train=False)`` computes, for batches of exactly ``x_shape`` (batch axis
        included) already checked by the caller, with every check, shape and choice that
        depends only on ``x_shape`` made once, here. It keeps nothing for backward, reads the
        parameters when called (training between calls is seen), never writes into x, and may
        return a buffer of its own that the next call rewrites. None (the default): the layer
        has no plan step, and the plan calls ``forward``."""
        return None

    def _backward(self, dy: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _cache_output_shape(self):
        """Shape of the last output, if the layer recorded it (``self._out_shape``)."""
        return getattr(self, "_out_shape", None)

    def _check_input(self, x) -> np.ndarray:
        if not self.built:
            raise ConvscopeError(f"{self.type_name} is not built; call model.build(input_shape) "
                                 "before forward")
        if not isinstance(x, np.ndarray):
            x = np.asarray(x)
        if x.dtype.kind != "f":   # real floating point; np.issubdtype costs 2.6 µs a call, this 0.3
            raise ConvscopeError(f"{self.type_name} expects a floating-point array, got {x.dtype}; "
                                 f"convert it with x.astype(np.{self.dtype.name})")
        if x.ndim != len(self.input_shape) + 1:
            raise ConvscopeError(
                f"{self.type_name} expects a batch of shape (N, {', '.join(map(str, self.input_shape))}),"
                f" got an array of shape {x.shape}; add or remove the batch axis")
        if x.shape[1:] != self.input_shape:
            self.output_shape(x.shape[1:])  # raises a clear error if this size cannot work
        return x.astype(self.dtype, copy=False)

    # ----- parameters and state -------------------------------------------------------------
    def named_parameters(self, prefix: str = "") -> Iterator[Tuple[str, Parameter]]:
        for local, p in self._params.items():
            yield prefix + local, p
        for name, child in self.children():
            yield from child.named_parameters(f"{prefix}{name}.")

    def named_buffers(self, prefix: str = "") -> Iterator[Tuple[str, np.ndarray]]:
        for local, b in self._buffers.items():
            yield prefix + local, b
        for name, child in self.children():
            yield from child.named_buffers(f"{prefix}{name}.")

    def parameters(self) -> List[Parameter]:
        return [p for _, p in self.named_parameters()]

    def state_dict(self) -> Dict[str, np.ndarray]:
        """Copies of every parameter and buffer under PyTorch-compatible dotted names."""
        state = {}
        for name, p in self.named_parameters():
            state[name] = p.value.copy()
        for name, b in self.named_buffers():
            state[name] = np.array(b, copy=True)
        return _ordered_like_torch(self, state)

    def load_state_dict(self, state: Dict[str, np.ndarray], strict: bool = True) -> None:
        """Copy arrays into the live parameters and buffers (in place). With ``strict``,
        missing or unexpected names are an error; a shape mismatch always is."""
        if not self.built:
            raise ConvscopeError("build the model before load_state_dict (model.build(input_shape))")
        targets = dict(self.named_parameters())
        buffers = dict(_named_buffer_owners(self))
        missing = [k for k in list(targets) + list(buffers) if k not in state]
        unexpected = [k for k in state if k not in targets and k not in buffers]
        if strict and (missing or unexpected):
            parts = []
            if missing:
                parts.append(f"missing {', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}")
            if unexpected:
                parts.append(f"unexpected {', '.join(unexpected[:5])}{' ...' if len(unexpected) > 5 else ''}")
            raise ConvscopeError(f"state dict does not match the model: {'; '.join(parts)}")
        for name, array in state.items():
            array = np.asarray(array)
            if array.dtype.kind not in "fiu" and (name in targets or name in buffers):
                raise ConvscopeError(f"state dict entry {name!r} holds {array.dtype} values; give real numbers")
            if name in targets:
                p = targets[name]
                if array.shape != p.value.shape:
                    raise ConvscopeError(f"state dict entry {name!r} has shape {array.shape}, "
                                         f"the model expects {p.value.shape}")
                np.copyto(p.value, array, casting="unsafe")
            elif name in buffers:
                owner, local = buffers[name]
                current = owner._buffers[local]
                if array.shape != current.shape:
                    raise ConvscopeError(f"state dict entry {name!r} has shape {array.shape}, "
                                         f"the model expects {current.shape}")
                np.copyto(current, array, casting="unsafe")

    # ----- description ----------------------------------------------------------------------
    def config(self) -> Dict[str, object]:
        """Constructor arguments as currently set, by the constructor's own names."""
        sig = inspect.signature(type(self).__init__)
        return {name: getattr(self, name) for name in list(sig.parameters)[1:]
                if sig.parameters[name].kind not in (inspect.Parameter.VAR_POSITIONAL,
                                                     inspect.Parameter.VAR_KEYWORD)}

    def spec(self) -> dict:
        """This layer as a spec entry (a Sequential returns the whole document instead)."""
        return self.spec_entry()

    def spec_entry(self) -> dict:
        """This layer inside a ``layers`` list: ``{"type": ..., **arguments that differ from defaults}``."""
        entry = {"type": self.type_name}
        for name, (value, _) in self._non_default_config().items():
            entry[name] = _jsonable(value)
        return entry

    def _non_default_config(self) -> Dict[str, Tuple[object, bool]]:
        """{name: (value, positional)} for arguments that differ from the default."""
        sig = inspect.signature(type(self).__init__)
        out = {}
        for name, value in self.config().items():
            param = sig.parameters[name]
            required = param.default is inspect.Parameter.empty
            if required or not _same_value(value, param.default):
                out[name] = (value, required)
        return out

    def __repr__(self) -> str:
        # Only a required first argument is positional, as people write it: Conv2d(32, kernel_size=5).
        args = []
        for i, (name, (value, required)) in enumerate(self._non_default_config().items()):
            text = repr(_compact(value))
            first = i == 0 and required and name == next(iter(self.config()), None)
            args.append(text if first else f"{name}={text}")
        return f"{type(self).__name__}({', '.join(args)})"


class UndeclaredHook(ConvscopeError):
    """A layer type was used where it must declare a hook it lacks."""

    def __init__(self, layer, hook: str, what: str):
        cls = layer if isinstance(layer, type) else type(layer)
        super().__init__(f"layer type {cls.type_name!r} ({cls.__module__}.{cls.__qualname__}) does not "
                         f"declare {hook}: {what} (see docs/adding-a-layer.md)")
        self.type_name = cls.type_name
        self.hook = hook


def declared_family(layer) -> str:
    """``layer.family``, or UndeclaredHook when the type states none."""
    if not layer.family:
        raise UndeclaredHook(layer, "family", "set family = 'conv', 'pool', 'linear', 'activation', "
                                              "'norm', 'shape', 'join' or 'container'")
    return layer.family


def _compact(value):
    """(5, 5) -> 5 for display and specs; lists for other tuples."""
    if isinstance(value, tuple):
        if value and all(v == value[0] for v in value) and isinstance(value[0], int):
            return value[0]
        return list(value)
    return value


def _jsonable(value):
    value = _compact(value)
    if isinstance(value, np.generic):
        return value.item()
    return value


def _same_value(a, b) -> bool:
    a, b = _compact(a), _compact(b)
    if isinstance(a, bool) or isinstance(b, bool) or a is None or b is None:
        return a is b
    return a == b


def _check_sizes(layer: "Layer", input_shape: Shape) -> None:
    """Refuse, before allocating, a parameter or buffer beyond ``limits.MAX_TENSOR_VALUES``
    (a spec asking for 10**30 channels is an error, not a NumPy traceback or a swap storm)."""
    from .. import limits

    for name, shape in {**layer.param_shapes(input_shape), **layer.buffer_shapes(input_shape)}.items():
        values = 1
        for s in shape:
            values *= int(s)
        if values > limits.MAX_TENSOR_VALUES:
            raise limits.exceeded(f"{layer.type_name}: its {name} of shape {'×'.join(map(str, shape))}",
                                  values, "MAX_TENSOR_VALUES", "values")


def _check_shape(input_shape) -> Shape:
    try:
        values = list(input_shape)
        ok = all(isinstance(s, (int, np.integer)) and not isinstance(s, (bool, np.bool_)) for s in values)
        shape = tuple(int(s) for s in values) if ok else ()
    except (TypeError, ValueError, OverflowError):
        raise ConvscopeError(f"input shape must be a list of positive integers such as (3, 32, 32), "
                             f"got {input_shape!r}") from None
    if not ok or not shape or any(s < 1 for s in shape):
        raise ConvscopeError(f"input shape must be positive integers such as (3, 32, 32), got {input_shape!r}")
    return shape


def _named_buffer_owners(layer: Layer, prefix: str = ""):
    for local in layer._buffers:
        yield prefix + local, (layer, local)
    for name, child in layer.children():
        yield from _named_buffer_owners(child, f"{prefix}{name}.")


def _ordered_like_torch(layer: Layer, state: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
    """PyTorch lists a module's own parameters, then its buffers, then its children's."""
    order: List[str] = []

    def walk(node: Layer, prefix: str):
        order.extend(prefix + k for k in node._params)
        order.extend(prefix + k for k in node._buffers)
        for name, child in node.children():
            walk(child, f"{prefix}{name}.")

    walk(layer, "")
    return {k: state[k] for k in order}

