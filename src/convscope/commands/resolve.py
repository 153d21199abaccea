"""Turn a command line's MODEL argument (and ``--input``) into a model.

Command-line glue, so it lives with the commands: it reaches into the zoo and the
checkpoints, which themselves build on :mod:`convscope.spec` (kept free of both).

MODEL may be, tried in this order:

1. an existing file: ``.json`` / ``.yaml`` / ``.yml`` spec, a ``.npz`` checkpoint, or an ``.onnx``
   model (read with :func:`convscope.interop.from_onnx`; any other extension is recognised by
   its first bytes: a zip archive is a checkpoint, text is a spec);
2. a zoo name (``alexnet``);
3. the one-line text form (``"conv2d(8, 3) -> relu -> flatten -> linear(10)"``), parsed with
   :mod:`ast`, never evaluated; a single bare layer name such as ``flatten`` counts too;
4. anything else is an error that says which of the above was meant, with "did you mean".

Files are data: JSON via :mod:`json`, YAML via ``yaml.safe_load``, checkpoints via
``numpy.load(allow_pickle=False)`` in :func:`convscope.train.checkpoint.load_checkpoint`.
Every problem is one :class:`ConvscopeError` sentence.
"""
from __future__ import annotations

import difflib
import json
import os
import re
from dataclasses import dataclass
from typing import Optional, Tuple

from ..errors import ConvscopeError
from ..layers.base import Layer
from ..spec.text import looks_like_text_form, parse_text

SPEC_SUFFIXES = (".json", ".yaml", ".yml")
CHECKPOINT_SUFFIXES = (".npz",)
ONNX_SUFFIXES = (".onnx",)
#: What a MODEL file may be, for error messages.
FILE_KINDS = "a .json/.yaml spec, a .npz checkpoint or an .onnx model"
_MAX_SPEC_BYTES = 16 * 1024 * 1024


@dataclass
class Resolved:
    """A model and where it came from. ``input_shape`` is ``--input`` if given, else the
    spec's, checkpoint's or zoo entry's declared input (None when nobody gave one)."""

    model: Layer
    input_shape: Optional[Tuple[int, ...]]
    kind: str   # "zoo", "spec", "checkpoint" or "text"
    label: str


def parse_input(text: str) -> Tuple[int, ...]:
    """``"3x224x224"`` (or ``3,224,224``, ``3×224×224``, ``[3, 224, 224]``) -> ``(3, 224, 224)``."""
    if not isinstance(text, str) or not text.strip():
        raise ConvscopeError("--input must be a per-sample shape such as 3x224x224, got an empty value")
    body = text.strip().strip("[]()")
    # No empty parts: "3x" or "x3" is a typo, not the shape (3,).
    parts = re.split(r"\s*[x×X,]\s*|\s+", body.strip())
    if not parts or not all(re.fullmatch(r"\d+", p) for p in parts):
        raise ConvscopeError(f"--input must be positive integers joined by x, such as 3x224x224, got {text!r}")
    shape = tuple(int(p) for p in parts)
    if any(s < 1 for s in shape):
        raise ConvscopeError(f"--input sizes must be positive, got {text!r}; e.g. 3x224x224")
    return shape


def resolve(model_arg: str, input_arg: Optional[str] = None) -> Resolved:
    """Model for a MODEL argument; see the module docstring for what is accepted."""
    if not isinstance(model_arg, str) or not model_arg.strip():
        raise ConvscopeError("MODEL is empty; give a zoo name, a .json/.yaml spec, a .npz checkpoint "
                             "or the text form such as 'conv2d(8, 3) -> relu -> flatten -> linear(10)'")
    override = parse_input(input_arg) if input_arg is not None else None
    found = _resolve(model_arg.strip())
    if override is not None:
        found.input_shape = override
        warn_channel_last(override, input_arg)
    return found


def warn_channel_last(shape: Tuple[int, ...], text: str) -> None:
    """One line on stderr when a C×H×W shape looks written H×W×C (``32x32x3``: last 1 or 3, first
    larger), which would silently mean 32 channels."""
    import sys

    if len(shape) == 3 and shape[2] in (1, 3) and shape[0] > shape[2]:
        fixed = "x".join(str(s) for s in (shape[2], shape[0], shape[1]))
        print(f"convscope: warning: --input {text} is read as {shape[0]} channels of {shape[1]}×{shape[2]} "
              f"(C×H×W); if you meant {shape[2]} channel{'s' if shape[2] > 1 else ''} of "
              f"{shape[0]}×{shape[1]}, give --input {fixed}", file=sys.stderr)


def _resolve(arg: str) -> Resolved:
    from .. import zoo
    from ..layers.registry import LAYER_TYPES

    if os.path.isdir(arg):
        raise ConvscopeError(f"{arg} is a directory; give {FILE_KINDS}")
    if os.path.exists(arg):  # a FIFO, a device, a link to one: refused by name, never opened
        from ..files import require_regular
        return _from_file(require_regular(arg, "model file"))
    if arg.lower() in zoo.names():
        model = zoo.load(arg.lower())
        return Resolved(model, model.declared_input, "zoo", arg.lower())
    if looks_like_text_form(arg) or arg in LAYER_TYPES:
        model = parse_text(arg)
        return Resolved(model, None, "text", arg)
    if arg.lower().endswith(SPEC_SUFFIXES + CHECKPOINT_SUFFIXES + ONNX_SUFFIXES) or os.sep in arg or "/" in arg:
        raise ConvscopeError(f"no such file: {arg}")
    close = difflib.get_close_matches(arg.lower(), zoo.names() + sorted(LAYER_TYPES), n=1, cutoff=0.6)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise ConvscopeError(f"unknown model {arg!r}{hint}; give a zoo name ({', '.join(zoo.names())}), a "
                         ".json/.yaml spec, a .npz checkpoint or the text form such as "
                         "'conv2d(8, 3) -> relu -> flatten -> linear(10)'")


def _from_file(path: str) -> Resolved:
    lower = path.lower()
    if lower.endswith(CHECKPOINT_SUFFIXES):
        return _from_checkpoint(path)
    if lower.endswith(ONNX_SUFFIXES):
        return _from_onnx(path)
    from ..files import open_regular
    with open_regular(path, "model file") as handle:
        head = handle.read(4)
    if not lower.endswith(SPEC_SUFFIXES) and head.startswith(b"PK"):
        return _from_checkpoint(path)  # .npz files are zip archives
    document = _read_document(path)
    from ..spec.document import from_spec
    try:
        model = from_spec(document)
    except ConvscopeError as error:
        raise ConvscopeError(f"{path}: {error}") from None
    except RecursionError:
        raise ConvscopeError(f"{path}: layers are nested too deeply to be a model") from None
    return Resolved(model, model.declared_input, "spec", path)


def _read_document(path: str):
    from ..files import read_regular

    raw = read_regular(path, "spec file", "MAX_SPEC_BYTES")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ConvscopeError(f"{path} is not a text spec (it holds binary data that is not UTF-8); "
                             f"give {FILE_KINDS}") from None
    if "\x00" in text:
        raise ConvscopeError(f"{path} is not a text spec (it holds NUL bytes); give a .json or .yaml spec")
    if path.lower().endswith((".yaml", ".yml")):
        return _parse_yaml(path, text)
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise ConvscopeError(f"{path} is not valid JSON: {error.msg} at line {error.lineno}, column "
                             f"{error.colno}") from None
    except ValueError:  # an integer longer than Python's 4,300-digit conversion limit
        raise ConvscopeError(f"{path} holds a number with thousands of digits; sizes in a spec must be "
                             "ordinary integers such as 64") from None
    except RecursionError:
        from .. import limits
        raise limits.too_deep(path) from None


def _bounded_loader():
    """A yaml.SafeLoader that refuses more than ``limits.MAX_YAML_ALIASES`` aliases, or a document
    whose aliases expand to more than ``limits.MAX_YAML_NODES`` nodes ("billion laughs"); the
    expanded size is counted on the composed node graph, before any Python object is built."""
    import yaml

    from .. import limits

    class Loader(yaml.SafeLoader):
        aliases = 0

        def compose_node(self, parent, index):
            if self.check_event(yaml.AliasEvent):
                Loader.aliases += 1
                if Loader.aliases > limits.MAX_YAML_ALIASES:
                    raise limits.exceeded("the YAML aliases (*name)", Loader.aliases, "MAX_YAML_ALIASES")
            return super().compose_node(parent, index)

        def construct_document(self, node):
            sizes = {}
            stack = [(node, False)]
            while stack:  # expanded node count, post-order, memoised per node (aliases share nodes)
                item, done = stack.pop()
                if id(item) in sizes:
                    continue
                children = (item.value if isinstance(item, yaml.SequenceNode) else
                            [n for pair in item.value for n in pair] if isinstance(item, yaml.MappingNode)
                            else [])
                if done:
                    sizes[id(item)] = 1 + sum(sizes.get(id(c), 0) for c in children)
                    if sizes[id(item)] > limits.MAX_YAML_NODES:
                        raise limits.exceeded("the YAML document, aliases expanded,", sizes[id(item)],
                                              "MAX_YAML_NODES", "nodes")
                else:
                    stack.append((item, True))
                    stack.extend((c, False) for c in children if id(c) not in sizes)
            return super().construct_document(node)

    return Loader


def _parse_yaml(path: str, text: str):
    import yaml

    try:
        return yaml.load(text, Loader=_bounded_loader())  # a SafeLoader: no Python tags
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(error, "problem", None) or "cannot be parsed"
        raise ConvscopeError(f"{path} is not valid YAML: {problem}{where}") from None
    except ConvscopeError as error:
        raise ConvscopeError(f"{path}: {error}") from None
    except (ValueError, OverflowError):  # an integer longer than the 4,300-digit conversion limit
        raise ConvscopeError(f"{path} holds a number with thousands of digits; sizes in a spec must be "
                             "ordinary integers such as 64") from None
    except RecursionError:
        from .. import limits
        raise limits.too_deep(path) from None


def _from_checkpoint(path: str) -> Resolved:
    from ..train.checkpoint import load_checkpoint  # lazy: training code is heavier

    try:
        checkpoint = load_checkpoint(path)
    except ConvscopeError:
        raise
    except (OSError, ValueError, KeyError, EOFError) as error:
        raise ConvscopeError(f"{path} is not a convscope checkpoint ({type(error).__name__}: "
                             f"{str(error).splitlines()[0] if str(error) else 'unreadable'})") from None
    return Resolved(checkpoint.model, tuple(checkpoint.input_shape), "checkpoint", path)


def _from_onnx(path: str) -> Resolved:
    from ..interop import from_onnx

    model = from_onnx(path)
    return Resolved(model, tuple(model.input_shape), "onnx", path)


def _exported_description(model, path: str) -> dict:
    """The preprocessing and class names ``convscope export`` kept in an ONNX file's metadata
    (key "convscope"), checked as a checkpoint's are; {} for a file from elsewhere."""
    from .. import limits
    from ..train.checkpoint import check_description, parse_description

    text = getattr(model, "import_metadata", {}).get("convscope")
    if text is None:
        return {}
    limits.check(f"{path}: its convscope metadata", len(text), "MAX_SPEC_BYTES", "bytes")
    kept = parse_description(text, path)
    if not isinstance(kept, dict) or set(kept) - {"preprocessing", "class_names"}:
        raise ConvscopeError(f"{path}: its convscope metadata must be an object with preprocessing and "
                             "class_names; the file was edited by hand")
    check_description({"spec": {}, **kept}, path)
    return kept


def load_model_file(path: str):
    """A :class:`~convscope.train.checkpoint.Checkpoint` for a command's CHECKPOINT argument:
    a ``.npz`` checkpoint, or an ``.onnx`` model (its weights; no class names or training
    record, which commands then take from ``--data``; images are resized to its input and
    scaled to [0, 1])."""
    from ..train.checkpoint import Checkpoint, load_checkpoint

    if isinstance(path, str) and path.lower().endswith(ONNX_SUFFIXES):
        from ..train import preprocessing
        found = _from_onnx(path)
        shape = found.input_shape
        kept = _exported_description(found.model, path)
        prep = kept.get("preprocessing")
        if prep is None and len(shape) == 3 and shape[0] in (1, 3):
            # images resized to the file's input and scaled to [0, 1], as torchvision's ToTensor
            # does (a file from elsewhere does not record its normalisation)
            prep = preprocessing.make(shape[0], shape[1:], value_range=(0.0, 255.0), invert=False)
        return Checkpoint(path=path, model=found.model, spec={}, input_shape=shape,
                          preprocessing=prep, class_names=kept.get("class_names"))
    return load_checkpoint(path)
