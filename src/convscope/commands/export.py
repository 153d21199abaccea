"""``convscope export CHECKPOINT -o net.onnx | net.pt``: move a trained model to another engine.

* ``.onnx``: the model as an ONNX graph (opset 17, float32, dynamic batch), for ONNX Runtime.
* ``.pt``: a PyTorch state dict (``torch.save`` of tensors only, loadable with
  ``torch.load(..., weights_only=True)``) plus ``<name>.py`` next to it, a generated module
  that rebuilds the network with PyTorch alone, so training can continue under torch (and
  DistributedDataParallel) without convscope.
"""
from __future__ import annotations

import os

from ..errors import ConvscopeError
from ..files import require_output_path

FORMATS = {".onnx": "onnx", ".pt": "pt", ".pth": "pt"}


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "export", help="write a checkpoint as ONNX (.onnx) or PyTorch (.pt + generated .py)",
        description="Export a convscope checkpoint: -o net.onnx writes an ONNX model for ONNX Runtime; "
                    "-o net.pt writes a PyTorch state dict and net.py, a module file that rebuilds the "
                    "network with PyTorch alone.")
    parser.add_argument("checkpoint", metavar="CHECKPOINT", help="a convscope checkpoint (.npz)")
    parser.add_argument("-o", "--output", default=None, metavar="FILE",
                        help="where to write: a .onnx or .pt (or .pth) file; with --train-script a .py file "
                             "or a folder (default train.py)")
    parser.add_argument("--train-script", action="store_true",
                        help="write a stand-alone train.py (PyTorch only, no convscope) reproducing the "
                             "checkpoint's training, and its data and initial weights beside it (.npz)")
    parser.add_argument("--force", action="store_true",
                        help="overwrite -o (and the .py beside a .pt) even if convscope did not write it")
    parser.set_defaults(handler=run)


def _format_of(output: str) -> str:
    suffix = os.path.splitext(output)[1].lower()
    if suffix not in FORMATS:
        raise ConvscopeError(f"-o must end in .onnx or .pt to choose the format, got {output!r}; "
                             "e.g. -o net.onnx or -o net.pt")
    return FORMATS[suffix]


def _with_mark(data: bytes) -> bytes:
    """The torch.save zip archive with files.MARK as its zip comment (readers ignore comments)."""
    import io
    import zipfile

    from ..files import MARK

    buffer = io.BytesIO(data)
    with zipfile.ZipFile(buffer, "a") as archive:
        archive.comment = b"written by " + MARK
    return buffer.getvalue()


def onnx_metadata(checkpoint) -> dict:
    """What evaluate/predict need beyond the weights, kept in the ONNX file's metadata under
    "convscope" (JSON): the checkpoint's preprocessing (ONNX has no field for the image
    normalisation a model was trained with) and class names."""
    import json

    keep = {key: getattr(checkpoint, key) for key in ("preprocessing", "class_names")
            if getattr(checkpoint, key) is not None}
    return {"convscope": json.dumps(keep, sort_keys=True)} if keep else {}


def code_path_of(output: str) -> str:
    """The generated module's path beside a .pt output."""
    return os.path.splitext(output)[0] + ".py"


def export_pt(model, output: str, source: str) -> str:
    """Write the state dict to ``output`` and the module code beside it; returns the .py path."""
    from .. import __version__
    from ..interop.codegen import module_source
    from ..interop.optional import require
    from ..interop.torch_export import check_built, describe, torch_state_dict
    from ..files import atomic_write

    torch = require("torch", "export to .pt")
    check_built(model, "export")
    code_path = code_path_of(output)
    code = module_source(describe(model), input_shape=model.input_shape, dtype=str(model.dtype),
                         weights_file=os.path.basename(output), source=os.path.basename(source),
                         version=__version__)
    if os.path.isdir(code_path):
        raise ConvscopeError(f"cannot write {code_path} (the module code beside {output}): it is a folder")
    state = torch_state_dict(model, torch)
    # Temporary file and rename, as for checkpoints: a failed export never leaves half a file.
    import io
    buffer = io.BytesIO()
    torch.save(state, buffer)
    atomic_write(output, lambda handle: handle.write(_with_mark(buffer.getvalue())))
    atomic_write(code_path, lambda handle: handle.write(code), mode="w")
    return code_path


def run(args) -> int:
    from rich.console import Console

    from .resolve import load_model_file

    output = args.output
    if args.train_script:
        return _train_script(args)
    if output is None:
        raise ConvscopeError("-o FILE is required: -o net.onnx or -o net.pt (or --train-script)")
    kind = _format_of(output)
    require_output_path(output, "net", [args.checkpoint], args.force)
    if kind == "pt":
        require_output_path(code_path_of(output), "net", [args.checkpoint], args.force)
    checkpoint = load_model_file(args.checkpoint)
    model = checkpoint.model
    console = Console(highlight=False, soft_wrap=True, markup=False)  # file names are not markup
    if kind == "onnx":
        from ..interop import to_onnx
        to_onnx(model, output, onnx_metadata(checkpoint))
        console.print(f"wrote {output} (ONNX opset 17, input (N, {', '.join(map(str, model.input_shape))}))")
    else:
        code_path = export_pt(model, output, args.checkpoint)
        console.print(f"wrote {output} (PyTorch state dict, {len(model.state_dict())} tensors) and {code_path} "
                      f"(module code: build_model(), load())")
    return 0


def _train_script(args) -> int:
    """``--train-script``: train.py (or -o FILE.py, or -o DIR/train.py) and its arrays beside it."""
    from ..interop.optional import require
    from ..interop.train_script import write_train_script
    from ..train.checkpoint import load_checkpoint

    output = args.output or "train.py"
    if os.path.isdir(output):
        output = os.path.join(output, "train.py")
    elif not output.endswith(".py"):
        raise ConvscopeError(f"-o with --train-script is a .py file or an existing folder, got {output!r}; "
                             "e.g. -o train.py")
    require_output_path(output, "train")
    require("torch", "export --train-script")  # the script is only useful with torch; say so now
    checkpoint = load_checkpoint(args.checkpoint)
    script, data = write_train_script(checkpoint, output, args.checkpoint)
    print(f"wrote {script} (stand-alone PyTorch training: python {os.path.basename(script)}, or under "
          f"torchrun) and {data} (data splits, initial and trained weights)")
    return 0
