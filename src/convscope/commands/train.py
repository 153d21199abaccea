"""``convscope train [MODEL] [--data digits|PATH] [--epochs N] [--batch-size N] [--lr X]
[--out DIR] [--resume]``.

A thin layer over :func:`convscope.train.fit`. Without MODEL a small CNN fit for the data is
used (for digits: two 3×3 convolutions, a 2×2 max-pool and two linear layers). ``--out``
receives ``model.npz`` (best validation accuracy), ``last.npz`` (for ``--resume``) and
``history.json``. Every argument is checked before anything is written; an existing run is
never overwritten without ``--overwrite``. Ctrl-C saves and exits with code 130.
"""
from __future__ import annotations

import os
import sys
import time

DEFAULT_EPOCHS = 20


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "train", help="train a model (default: a small CNN on scikit-learn's digits)",
        description="Train a CNN on a CPU. Progress is a live bar per epoch on a terminal and one "
                    "line per epoch when piped.")
    parser.add_argument("model", metavar="MODEL", nargs="?", default=None,
                        help="zoo name, .json/.yaml spec, .npz checkpoint or text form (default: a small "
                             "CNN fit for the data; with --resume: the run's own model)")
    parser.add_argument("--data", default="digits",
                        help="'digits' (bundled with scikit-learn) or a path: IDX files (MNIST layout), "
                             "CIFAR-10 .bin batches, an .npz with x and y, or a folder of class sub-folders")
    parser.add_argument("--resize", metavar="HxW", default=None,
                        help="resize the data's images to HxW, e.g. 32x32 for lenet5 on digits (stored in "
                             "the checkpoint, so evaluate and predict do the same)")
    parser.add_argument("--channels", type=int, choices=(1, 3), default=None,
                        help="convert the images to 1 (gray) or 3 (RGB) channels (stored in the checkpoint)")
    parser.add_argument("--epochs", type=int, default=DEFAULT_EPOCHS,
                        help=f"total epochs (with --resume: train until this many; default {DEFAULT_EPOCHS})")
    parser.add_argument("--batch-size", type=int, default=32, help="samples per step (default 32)")
    parser.add_argument("--lr", type=float, default=None,
                        help="learning rate (default 0.003 for adam/adamw, 0.05 for sgd)")
    parser.add_argument("--optimizer", choices=("adam", "adamw", "sgd"), default="adam")
    parser.add_argument("--momentum", type=float, default=0.9, help="SGD momentum (default 0.9)")
    parser.add_argument("--nesterov", action="store_true", help="SGD with Nesterov momentum")
    parser.add_argument("--weight-decay", type=float, default=0.0, help="L2 (sgd, adam) or decoupled (adamw)")
    parser.add_argument("--schedule", choices=("cosine", "step", "constant"), default="cosine",
                        help="learning-rate schedule over the epochs (default cosine)")
    parser.add_argument("--warmup", type=int, default=0, metavar="EPOCHS",
                        help="linear warm-up epochs before the schedule (default 0)")
    parser.add_argument("--seed", type=int, default=0, help="initialisation and shuffling seed (default 0)")
    parser.add_argument("--out", default=None, help="run folder (default runs/<data name>)")
    parser.add_argument("--resume", action="store_true", help="continue the run in --out from last.npz")
    parser.add_argument("--overwrite", action="store_true", help="start over in an --out that holds a run")
    parser.add_argument("--quiet", action="store_true", help="no progress output")
    parser.add_argument("--keep-going", action="store_true",
                        help="train on after divergence (default: stop, keeping model.npz, when the loss is "
                             "not finite or grows past 10x the first epoch's (or 10x ln(classes), a "
                             "uniform guess, if lower), or accuracy stays at chance (1/classes + 5 "
                             "points) for 5 epochs)")
    parser.add_argument("--engine", choices=("convscope", "torch"), default="convscope",
                        help="who does the arithmetic: convscope (NumPy, default) or torch (PyTorch; under "
                             "torchrun: DistributedDataParallel); everything else is the same")
    parser.add_argument("--device", default=None,
                        help="with --engine torch: cpu, cuda or cuda:N (default cuda when available)")
    parser.add_argument("--dtype", choices=("float32", "float64"), default="float32",
                        help="parameter and arithmetic precision of a new run (default float32)")
    parser.set_defaults(handler=run)


def _default_out(data: str) -> str:
    name = os.path.splitext(os.path.basename(os.path.normpath(data)))[0] or "data"
    return os.path.join("runs", name)


def _last_complete(out: str) -> str:
    """Where the last complete epoch is saved (for the line a stopped distributed run prints)."""
    from ..errors import ConvscopeError
    from ..train.checkpoint import read_checkpoint
    from ..train.trainer import LAST

    path = os.path.join(out, LAST)
    try:
        meta, _ = read_checkpoint(path)
    except ConvscopeError:
        return "no epoch had finished, so nothing was saved"
    return f"the last complete checkpoint, {path} (epoch {meta.get('epoch')}), is kept; continue with --resume"


#: Seconds a rank other than 0 waits, after an error every rank meets, for rank 0 to report it.
SECONDARY_RANK_ERROR_WAIT = 60


def run(args) -> int:
    from ..errors import ConvscopeError
    from ..train.distributed import PeerLost, detect

    world = detect()
    if world is not None and args.engine != "torch":
        raise ConvscopeError("under torchrun (WORLD_SIZE is set) convscope train needs --engine torch")
    try:
        return _train(args, world)
    except ConvscopeError as error:
        if world is not None and not world.is_main and not isinstance(error, PeerLost):
            # Every rank meets the same error and rank 0 says it once. Exiting first would make
            # torchrun stop rank 0 before it gets there (it would say "interrupted" instead),
            # so wait for rank 0's exit, whose SIGTERM to this rank ends the wait quietly.
            time.sleep(SECONDARY_RANK_ERROR_WAIT)
            return 2
        raise


def _train(args, world) -> int:
    import numpy as np

    from ..errors import ConvscopeError
    from ..train import load_data, preprocessing
    from ..train.checkpoint import load_checkpoint
    from ..train.distributed import PeerLost
    from ..train.trainer import BEST, TrainingInterrupted, evaluate_arrays, fit

    from .. import limits
    if args.epochs < 1:
        raise ConvscopeError(f"--epochs must be at least 1, got {args.epochs}")
    limits.check("--epochs", args.epochs, "MAX_EPOCHS")
    limits.check("--warmup", args.warmup, "MAX_EPOCHS")
    if args.lr is not None and not args.lr > 0:
        raise ConvscopeError(f"--lr must be greater than 0, got {args.lr:g}; try 0.001")
    model = None
    if args.model is not None:
        from .resolve import resolve
        model = resolve(args.model).model
    from ..train import transform
    data = transform.apply(load_data(args.data), transform.parse_size(args.resize), args.channels)
    if len(set(data.train.y.tolist())) < 2:
        print(f"convscope: warning: every training label of {data.name} is the same class; the model can "
              "only learn to answer that class", file=sys.stderr)
    out = args.out or _default_out(args.data)
    try:
        result = fit(model, data, epochs=args.epochs, lr=args.lr, batch_size=args.batch_size,
                     optimizer=args.optimizer, momentum=args.momentum, nesterov=args.nesterov,
                     weight_decay=args.weight_decay, schedule=args.schedule, warmup_epochs=args.warmup,
                     seed=args.seed, out=out, resume=args.resume, overwrite=args.overwrite,
                     progress=not args.quiet, engine=args.engine, device=args.device,
                     dtype=np.dtype(args.dtype), keep_going=args.keep_going)
    except PeerLost as lost:
        raise PeerLost(f"{lost}; {_last_complete(out)}") from None
    except TrainingInterrupted as stop:
        if world is None or world.is_main:
            from ..cli import say  # one stderr line, even if a signal follows
            say(f"convscope: {stop}")
        return 128 + int(stop.signum)  # 130 for Ctrl-C, 143 for SIGTERM
    if world is not None and not world.is_main:
        return 0
    best = load_checkpoint(os.path.join(out, BEST))
    x_test = preprocessing.normalize(data.test.x, best.preprocessing, dtype=best.model.dtype)
    _, test_accuracy, _ = evaluate_arrays(best.model, x_test, data.test.y)
    if not args.quiet and test_accuracy is not None:
        print(f"best validation accuracy {100 * result.best_val_accuracy:.2f}% at epoch {result.best_epoch}; "
              f"test accuracy of {os.path.join(out, BEST)}: {100 * test_accuracy:.2f}% "
              f"({len(data.test)} samples)")
    return 0
