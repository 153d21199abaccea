"""The main job (``convscope train --data digits``) written as a plain PyTorch loop, to time
against it as a whole process (``python -m benchmarks --only mainjob``).

    python benchmarks/digits_torch_loop.py --out DIR [--threads 2] [--epochs 20]

Same work as convscope's defaults, step by step (src/convscope/train):

* data: scikit-learn's 1,797 digits (1×8×8, ink 0–16) scaled to x/16; split as
  ``convscope.train.data.from_arrays`` with seed 0: ``default_rng(0).permutation(1797)``, the
  first round(0.2·1797) = 359 are the test set, the next round(0.1·1438) = 144 validation, the
  remaining 1,294 training (each part in index order);
* model: conv2d(1→16, 3, padding 1) → ReLU → conv2d(16→32, 3, padding 1) → ReLU → max-pool 2 →
  flatten → linear(512→64) → ReLU → linear(64→10): 38,282 parameters, PyTorch's default
  initialisation (the same uniform ±1/√fan_in bounds convscope uses), seed 0;
* batches: epoch e visits the training set in ``default_rng([0, e]).permutation(1294)`` order,
  32 per batch (the last one 14);
* Adam, lr 0.003, cosine schedule over 20 epochs stepped once per epoch (CosineAnnealingLR),
  mean cross-entropy;
* after each epoch: validation loss and accuracy in eval mode (batches of 256), the best
  weights (highest validation accuracy, then lowest loss) saved to ``model.pt``, the latest
  state with the optimizer to ``last.pt`` and the history to ``history.json``, as convscope
  writes model.npz, last.npz and history.json;
* at the end the test accuracy of the best weights, in the line convscope prints.
"""
from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np
import torch
from torch import nn

SEED, BATCH, LR, EPOCHS = 0, 32, 0.003, 20


def split_digits(seed: int = SEED):
    """(train, val, test) pairs of (x float32 (N, 1, 8, 8), y int64), as convscope splits them."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = (bunch.images.astype(np.float64)[:, None] / 16.0).astype(np.float32)
    y = bunch.target.astype(np.int64)
    order = np.random.default_rng(seed).permutation(len(y))
    n_test = min(len(y) - 1, max(1, int(round(len(y) * 0.2))))
    test, rest = order[:n_test], order[n_test:]
    n_val = min(len(rest) - 1, max(1, int(round(len(rest) * 0.1))))
    val, train = np.sort(rest[:n_val]), np.sort(rest[n_val:])
    return (x[train], y[train]), (x[val], y[val]), (x[test], y[test])


def make_model() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(),
        nn.MaxPool2d(2), nn.Flatten(), nn.Linear(32 * 4 * 4, 64), nn.ReLU(), nn.Linear(64, 10))


def evaluate(model, x: torch.Tensor, y: torch.Tensor, batch: int = 256):
    """(mean cross-entropy, accuracy) in eval mode."""
    model.eval()
    loss, correct = 0.0, 0
    with torch.inference_mode():
        for start in range(0, len(y), batch):
            z = model(x[start:start + batch])
            loss += float(nn.functional.cross_entropy(z, y[start:start + batch], reduction="sum"))
            correct += int((z.argmax(1) == y[start:start + batch]).sum())
    return loss / len(y), correct / len(y)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="folder for model.pt, last.pt and history.json")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=EPOCHS)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(SEED)
    os.makedirs(args.out, exist_ok=True)

    (xt, yt), (xv, yv), (xs, ys) = (tuple(torch.from_numpy(a) for a in part) for part in split_digits())
    model = make_model()
    optimizer = torch.optim.Adam(model.parameters(), lr=LR)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=args.epochs)
    history, best = [], None
    for epoch in range(args.epochs):
        started = time.perf_counter()
        model.train()
        order = np.random.default_rng([SEED, epoch]).permutation(len(yt))
        loss_sum, correct = 0.0, 0
        for start in range(0, len(order), BATCH):
            idx = torch.from_numpy(order[start:start + BATCH])
            xb, yb = xt[idx], yt[idx]
            optimizer.zero_grad(set_to_none=True)
            z = model(xb)
            loss = nn.functional.cross_entropy(z, yb)
            loss.backward()
            optimizer.step()
            loss_sum += loss.item() * len(idx)
            correct += int((z.argmax(1) == yb).sum())
        val_loss, val_acc = evaluate(model, xv, yv)
        row = {"epoch": epoch + 1, "train_loss": loss_sum / len(yt), "train_accuracy": correct / len(yt),
               "val_loss": val_loss, "val_accuracy": val_acc, "lr": schedule.get_last_lr()[0],
               "seconds": round(time.perf_counter() - started, 4)}
        schedule.step()
        history.append(row)
        if best is None or (val_acc, -val_loss) > best[0]:
            best = ((val_acc, -val_loss), epoch + 1)
            torch.save(model.state_dict(), os.path.join(args.out, "model.pt"))
        torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                    "schedule": schedule.state_dict(), "epoch": epoch + 1}, os.path.join(args.out, "last.pt"))
        with open(os.path.join(args.out, "history.json"), "w") as handle:
            json.dump(history, handle, indent=1)
        print(f"epoch {epoch + 1}/{args.epochs}: loss {row['train_loss']:.4f}, accuracy "
              f"{100 * row['train_accuracy']:.2f}%, val loss {val_loss:.4f}, val accuracy {100 * val_acc:.2f}%",
              flush=True)
    model.load_state_dict(torch.load(os.path.join(args.out, "model.pt")))
    _, test_acc = evaluate(model, xs, ys)
    print(f"best validation accuracy {100 * best[0][0]:.2f}% at epoch {best[1]}; test accuracy of "
          f"{os.path.join(args.out, 'model.pt')}: {100 * test_acc:.2f}% ({len(ys)} samples)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
