"""Training progress: a rich live bar per epoch on a terminal, one plain line per epoch when
the output is piped or captured (rich's Console decides which).

The trainer calls ``start_epoch``, ``update`` after every batch, and ``end_epoch`` with the
epoch's row of history; ``message`` prints one extra line (resume notes, best-model saves).
"""
from __future__ import annotations

import sys
import time
from typing import Dict, Optional

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn


def format_epoch_line(row: Dict, total_epochs: int) -> str:
    """'epoch 3/20  train loss 0.1234 acc 96.52%  val loss 0.0987 acc 97.22%  4,210 samples/s  0.4 s'."""
    width = len(str(total_epochs))
    parts = [f"epoch {row['epoch']:>{width}}/{total_epochs}",
             f"train loss {row['train_loss']:.4f} acc {100 * row['train_accuracy']:.2f}%"]
    if row.get("val_loss") is not None:
        parts.append(f"val loss {row['val_loss']:.4f} acc {100 * row['val_accuracy']:.2f}%")
    if row.get("samples_per_second"):
        parts.append(f"{row['samples_per_second']:,.0f} samples/s")
    parts.append(f"{row['seconds']:.1f} s")
    return "  ".join(parts)


class Reporter:
    """Progress display; ``enabled=False`` prints nothing (the Python API's quiet mode)."""

    def __init__(self, total_epochs: int, enabled: bool = True, console: Optional[Console] = None):
        self.total_epochs = total_epochs
        self.enabled = enabled
        self.console = console or Console(file=sys.stdout, highlight=False)
        self._progress: Optional[Progress] = None
        self._task = None
        self._seen = 0
        self._started = 0.0

    @property
    def live(self) -> bool:
        return self.enabled and self.console.is_terminal

    def start_epoch(self, epoch: int, batches: int) -> None:
        self._seen, self._started = 0, time.perf_counter()
        if not self.live:
            return
        self._progress = Progress(
            TextColumn(f"epoch {epoch}/{self.total_epochs}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]}  acc {task.fields[acc]}  {task.fields[rate]} samples/s"),
            TimeRemainingColumn(), console=self.console, transient=True)
        self._progress.start()
        self._task = self._progress.add_task("train", total=batches, loss="-", acc="-", rate="-")

    def update(self, samples: int, mean_loss: float, accuracy: float) -> None:
        self._seen += samples
        if self._progress is None:
            return
        elapsed = max(time.perf_counter() - self._started, 1e-9)
        self._progress.update(self._task, advance=1, loss=f"{mean_loss:.4f}", acc=f"{100 * accuracy:.1f}%",
                              rate=f"{self._seen / elapsed:,.0f}")

    def end_epoch(self, row: Dict) -> None:
        self.close()
        if self.enabled:
            self.console.print(format_epoch_line(row, self.total_epochs), markup=False, highlight=False,
                               soft_wrap=True)

    def message(self, text: str) -> None:
        if self.enabled:
            self.console.print(text, markup=False, highlight=False, soft_wrap=True)

    def close(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
