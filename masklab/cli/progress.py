"""Training progress on stderr: a rich bar on a TTY, one plain line per epoch otherwise."""

from __future__ import annotations

import sys

from masklab.cli.common import err_console, say


def epoch_text(row: dict, epochs: int) -> str:
    parts = [f"epoch {row['epoch']}/{epochs}", f"loss {row['train_loss']:.4f}"]
    if "train_acc" in row:
        parts.append(f"acc {row['train_acc']:.4f}")
    if "val_acc" in row:
        parts.append(f"val_acc {row['val_acc']:.4f}")
    elif "val_loss" in row:
        parts.append(f"val_loss {row['val_loss']:.4f}")
    for op in row.get("ops", []):
        parts.append(f"{op['op']} {op['realized']:.4f}")
    parts.append(f"{row['seconds']:.1f}s")
    return "  ".join(parts)


class PlainReporter:
    """One line per epoch, for logs and pipes."""

    def __init__(self) -> None:
        self.run_id = ""
        self.epochs = 0

    def start(self, run_id: str, epochs: int, steps: int, start_epoch: int) -> None:
        self.run_id, self.epochs = run_id, epochs
        note = f" (resuming after epoch {start_epoch})" if start_epoch else ""
        say(f"{run_id}: training {epochs} epochs x {steps} steps{note}")

    def step(self, epoch: int, step: int) -> None:
        pass

    def epoch(self, row: dict) -> None:
        say(f"{self.run_id}: {epoch_text(row, self.epochs)}")

    def finish(self) -> None:
        pass


class RichReporter:
    """A live progress bar over all steps with the latest epoch's loss and accuracy."""

    def __init__(self) -> None:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[info]}"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=err_console,
            transient=False,
        )
        self.task = None
        self.steps = 1

    def start(self, run_id: str, epochs: int, steps: int, start_epoch: int) -> None:
        self.steps = steps
        self.progress.start()
        self.task = self.progress.add_task(
            run_id, total=epochs * steps, completed=start_epoch * steps, info=f"epoch {start_epoch + 1}/{epochs}"
        )
        self.epochs = epochs

    def step(self, epoch: int, step: int) -> None:
        self.progress.update(self.task, completed=epoch * self.steps + step + 1)

    def epoch(self, row: dict) -> None:
        info = f"epoch {row['epoch']}/{self.epochs} loss {row['train_loss']:.4f}"
        if "train_acc" in row:
            info += f" acc {row['train_acc']:.4f}"
        if "val_acc" in row:
            info += f" val {row['val_acc']:.4f}"
        self.progress.update(self.task, info=info)

    def finish(self) -> None:
        self.progress.stop()


def make_reporter(quiet: bool = False):
    from masklab.train import Reporter

    if quiet:
        return Reporter()
    return RichReporter() if sys.stderr.isatty() else PlainReporter()
