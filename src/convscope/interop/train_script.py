"""``convscope export CHECKPOINT --train-script``: a stand-alone ``train.py`` (PyTorch and NumPy
only, no convscope) that reproduces the checkpoint's training, for clusters without convscope.

Written beside it, ``<stem>_data.npz`` holds what the script needs as plain arrays: the
train / val / test splits already preprocessed (``x = (raw − mean) / std`` in the model's
dtype), the labels, the class names, the initial weights convscope's run started from
(``init/<name>``: the spec built with the run's seed) and the checkpoint's weights
(``trained/<name>``, for ``--start checkpoint``).

The script repeats convscope's loop: the epoch's order ``default_rng([seed, epoch]).permutation``,
batches of ``batch_size``, mean cross-entropy, the same torch.optim optimizer and
hyper-parameters as ``--engine torch`` (:func:`convscope.train.torch_engine.torch_optimizer`),
the learning rate of each epoch from the same closed-form schedule
(:mod:`convscope.train.schedules`), dropout seeded per (seed, epoch, batch). Under torchrun it
trains with DistributedDataParallel with the same sharding and gradient scaling as
:mod:`convscope.train.distributed`. Every value taken from the checkpoint is written with
:func:`.codegen.literal` (repr), so a hostile class or file name stays a string.
"""
from __future__ import annotations

import os
from typing import Dict

import numpy as np

from ..errors import ConvscopeError
from .codegen import literal, module_classes, render
from .torch_export import TorchDesc

_LOOP = r'''
def lr_at(epoch):
    """The learning rate of epoch ``epoch`` (0-based): convscope's schedule, closed form."""
    s = SCHEDULE
    w = s["warmup_epochs"]
    if epoch < w:
        return s["base_lr"] * (s["warmup_factor"] + (1.0 - s["warmup_factor"]) * epoch / w)
    e = epoch - w
    if s["kind"] == "step":
        return s["base_lr"] * s["gamma"] ** (e // s["step_size"])
    if s["kind"] == "cosine":
        period = max(s["total_epochs"] - w, 1)
        e = min(e, period)
        return s["eta_min"] + (s["base_lr"] - s["eta_min"]) * (1 + math.cos(math.pi * e / period)) / 2
    return s["base_lr"]


def make_optimizer(params):
    o = OPTIMIZER["options"]
    if OPTIMIZER["name"] == "sgd":
        return torch.optim.SGD(params, lr=SCHEDULE["base_lr"], momentum=o.get("momentum", 0.0),
                               dampening=o.get("dampening", 0.0), weight_decay=o.get("weight_decay", 0.0),
                               nesterov=o.get("nesterov", False), foreach=False)
    cls = torch.optim.AdamW if OPTIMIZER["name"] == "adamw" else torch.optim.Adam
    default_decay = 0.01 if OPTIMIZER["name"] == "adamw" else 0.0
    return cls(params, lr=SCHEDULE["base_lr"], betas=tuple(o.get("betas", (0.9, 0.999))), eps=o.get("eps", 1e-8),
               weight_decay=o.get("weight_decay", default_decay), amsgrad=o.get("amsgrad", False), foreach=False)


def evaluate(model, x, y):
    if len(y) == 0:
        return None, None
    total, correct = 0.0, 0
    model.eval()
    with torch.no_grad():
        for start in range(0, len(y), 256):
            z = model(x[start:start + 256])
            total += float(F.cross_entropy(z, y[start:start + 256], reduction="sum"))
            correct += int((z.argmax(dim=1) == y[start:start + 256]).sum())
    model.train()
    return total / len(y), correct / len(y)


def main(argv=None):
    parser = argparse.ArgumentParser(description="Train the exported convscope model with PyTorch alone.")
    parser.add_argument("--epochs", type=int, default=EPOCHS, help="epochs (default: the run's)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--start", choices=("fresh", "checkpoint"), default="fresh",
                        help="fresh: the initial weights of the convscope run; checkpoint: its trained weights")
    parser.add_argument("--data", default=None, help="the arrays file (default: DATA_FILE beside this script)")
    parser.add_argument("--out", default="trained.pt", help="where to save the final state dict")
    args = parser.parse_args(argv)
    here = os.path.dirname(os.path.abspath(__file__))
    arrays = np.load(args.data or os.path.join(here, DATA_FILE), allow_pickle=False)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    device = args.device
    if world > 1:
        if BATCH_SIZE % world:
            sys.exit(f"train.py: error: the global batch {BATCH_SIZE} is not divisible by {world} processes")
        if device.startswith("cuda"):
            device = "cuda:" + os.environ.get("LOCAL_RANK", "0")
        torch.distributed.init_process_group("nccl" if device.startswith("cuda") else "gloo")
    model = build_model()
    prefix = "init/" if args.start == "fresh" else "trained/"
    model.load_state_dict({k[len(prefix):]: torch.from_numpy(arrays[k]) for k in arrays.files
                           if k.startswith(prefix)})
    model.to(device).train()
    names = [name for name, _ in model.named_parameters()]
    optimizer = make_optimizer([dict(model.named_parameters())[name] for name in names])
    net = model
    if world > 1:
        if device.startswith("cuda"):
            net = model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
        net = torch.nn.parallel.DistributedDataParallel(model, device_ids=[device] if device.startswith("cuda") else None)
    x_train, y_train = (torch.from_numpy(arrays[k]).to(device) for k in ("x_train", "y_train"))
    x_val, y_val = (torch.from_numpy(arrays[k]).to(device) for k in ("x_val", "y_val"))
    has_dropout = any(isinstance(m, nn.modules.dropout._DropoutNd) for m in model.modules())
    history = []
    for epoch in range(args.epochs):
        lr = lr_at(epoch)
        for group in optimizer.param_groups:
            group["lr"] = lr
        order = np.random.default_rng([SEED, epoch]).permutation(len(y_train))
        loss_sum, correct, seen, started = 0.0, 0, 0, time.perf_counter()
        for b, start in enumerate(range(0, len(order), BATCH_SIZE)):
            idx = order[start:start + BATCH_SIZE]
            if has_dropout:
                torch.manual_seed(int(np.random.SeedSequence([SEED, epoch, b]).generate_state(1)[0]))
            local = torch.from_numpy(np.array_split(idx, world)[rank]).to(device)
            logits = net(x_train[local])
            batch_loss = F.cross_entropy(logits, y_train[local], reduction="sum")
            sums = torch.tensor([float(batch_loss.detach()), float((logits.argmax(1) == y_train[local]).sum())],
                                dtype=torch.float64, device=device)
            if world > 1:
                torch.distributed.all_reduce(sums)
            if not math.isfinite(float(sums[0])):
                sys.exit(f"train.py: error: the loss became {float(sums[0])} at epoch {epoch + 1}, batch {b + 1}")
            optimizer.zero_grad(set_to_none=True)
            (batch_loss * (world / len(idx))).backward()
            optimizer.step()
            loss_sum, correct, seen = loss_sum + float(sums[0]), correct + int(sums[1]), seen + len(idx)
        val_loss, val_acc = evaluate(model, x_val, y_val)
        row = {"epoch": epoch + 1, "train_loss": loss_sum / seen, "train_accuracy": correct / seen,
               "val_loss": val_loss, "val_accuracy": val_acc, "lr": lr,
               "seconds": round(time.perf_counter() - started, 4)}
        history.append(row)
        if rank == 0:
            shown = "" if val_loss is None else f"  val loss {val_loss:.4f} acc {100 * val_acc:.2f}%"
            print(f"epoch {epoch + 1}/{args.epochs}  train loss {row['train_loss']:.4f} "
                  f"acc {100 * row['train_accuracy']:.2f}%{shown}", flush=True)
    if rank == 0:
        torch.save({k: v.detach().cpu() for k, v in model.state_dict().items()}, args.out)
        with open(os.path.splitext(args.out)[0] + "_history.json", "w", encoding="utf-8") as handle:
            json.dump(history, handle, indent=1)
    if world > 1:
        torch.distributed.destroy_process_group()
    return history


if __name__ == "__main__":
    main()
'''


def script_source(desc: TorchDesc, *, dtype: str, input_shape, training: Dict, class_names, data_file: str,
                  source: str, version: str) -> str:
    """The whole generated ``train.py``."""
    classes = module_classes(desc)
    torch_dtype = "torch.float64" if dtype == "float64" else "torch.float32"
    header = ('"""Train a network exported by convscope with PyTorch alone (no convscope needed).\n\n'
              "    python train.py                        # one process (cuda when available)\n"
              "    torchrun --nproc_per_node 4 train.py   # DistributedDataParallel, same global batch\n\n"
              "The data, initial weights and trained weights are in DATA_FILE beside this file; the\n"
              "optimizer, schedule, epochs, batch size and seed are the convscope run's (constants below).\n"
              '"""')
    constants = (f"CONVSCOPE_VERSION = {literal(str(version))}\n"
                 f"SOURCE = {literal(str(source))}  # the checkpoint this script was exported from\n"
                 f"DATA_FILE = {literal(str(data_file))}  # arrays beside this script\n"
                 f"DATA_NAME = {literal(str(training.get('data', '')))}\n"
                 f"CLASS_NAMES = {literal([str(c) for c in class_names])}\n"
                 f"INPUT_SHAPE = {literal(tuple(int(s) for s in input_shape))}\n"
                 f"DTYPE = {torch_dtype}\n"
                 f"EPOCHS = {literal(int(training['epochs']))}\n"
                 f"BATCH_SIZE = {literal(int(training['batch_size']))}\n"
                 f"SEED = {literal(int(training['seed']))}\n"
                 f"OPTIMIZER = {_dict_literal(training['optimizer'])}\n"
                 f"SCHEDULE = {_dict_literal(training['schedule'])}")
    build = ('def build_model():\n'
             '    """The network (fresh random weights; main() loads the exported ones)."""\n'
             f"    model = {render(desc, 1)}\n"
             "    return model.to(DTYPE)")
    imports = ("import argparse\nimport json\nimport math\nimport os\nimport sys\nimport time\n\n"
               "import numpy as np\nimport torch\nfrom torch import nn\n"
               "import torch.nn.functional as F  # noqa: F401 (used by some modules)")
    return "\n\n\n".join([header, imports, constants, *classes, build]) + "\n\n" + _LOOP


def _dict_literal(value) -> str:
    """A JSON-like dict (str keys; numbers, bools, strings, lists, dicts) as Python source."""
    if isinstance(value, dict):
        return "{" + ", ".join(f"{literal(str(k))}: {_dict_literal(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(_dict_literal(v) for v in value) + "]"
    return literal(value)


def write_train_script(checkpoint, output: str, source: str) -> tuple:
    """Write ``output`` (a .py file) and its arrays beside it; returns (script path, data path)."""
    from .. import __version__
    from ..files import atomic_write
    from ..spec import from_spec
    from ..train import load_data, preprocessing
    from .torch_export import check_built, describe

    model = checkpoint.model
    check_built(model, "export --train-script")
    training = (checkpoint.meta or {}).get("training") or {}
    missing = [k for k in ("data", "epochs", "batch_size", "seed", "optimizer", "schedule") if k not in training]
    if missing:
        raise ConvscopeError(f"{source} has no training record ({', '.join(missing)} missing); export a "
                             "model.npz or last.npz written by convscope train")
    data = load_data(training["data"], val_fraction=training.get("val_fraction", 0.1))
    if tuple(data.input_shape) != tuple(model.input_shape):
        raise ConvscopeError(f"{source} takes {model.input_shape} inputs but its data {training['data']!r} has "
                             f"{data.input_shape}")
    prep = checkpoint.preprocessing or data.preprocessing
    arrays = {}
    for split in ("train", "val", "test"):
        part = getattr(data, split)
        arrays[f"x_{split}"] = preprocessing.normalize(part.x, prep, dtype=model.dtype)
        arrays[f"y_{split}"] = part.y.astype(np.int64)
    arrays["class_names"] = np.array([str(c) for c in data.class_names])
    fresh = from_spec(checkpoint.spec).build(model.input_shape, seed=int(training["seed"]), dtype=model.dtype)
    arrays.update({f"init/{k}": v for k, v in fresh.state_dict().items()})
    arrays.update({f"trained/{k}": v for k, v in model.state_dict().items()})
    data_path = os.path.splitext(output)[0] + "_data.npz"
    code = script_source(describe(model), dtype=np.dtype(model.dtype).name, input_shape=model.input_shape,
                         training=training, class_names=data.class_names, data_file=os.path.basename(data_path),
                         source=os.path.basename(source), version=__version__)
    atomic_write(data_path, lambda handle: np.savez(handle, **arrays))
    atomic_write(output, lambda handle: handle.write(code), mode="w")
    return output, data_path
