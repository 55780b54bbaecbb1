"""The live view of a study on stderr.

On a terminal: one line for the whole study (done / running / failed / left, an ETA)
and a bar per running run (its epoch, its steps within the epoch, the last loss and
accuracy). In a pipe: today's line per epoch of each run, a line when an epoch has run
for 30 s without one, and a line per finished run. With -q: only the line per
finished run.
"""

from __future__ import annotations

import statistics
import sys
import time
from dataclasses import dataclass, field

from masklab.cli.common import err_console, say
from masklab.cli.progress import epoch_text
from masklab.study.executors import Events, Result

HEARTBEAT_S = 30.0  # in a pipe, a line at least this often while an epoch runs


@dataclass
class _Running:
    epochs: int
    steps: int
    start_epoch: int
    began: float = field(default_factory=time.monotonic)
    done_steps: int = 0  # steps finished in this process (a resumed run starts later)
    epoch: int = 0
    step: int = 0
    info: str = ""
    last_line: float = field(default_factory=time.monotonic)
    task: int | None = None
    runs: int = 1  # runs trained together in it (a seed group)

    @property
    def fraction(self) -> float:
        total = self.epochs * self.steps
        return (self.epoch * self.steps + self.step + 1) / total if total else 0.0


class StudyView(Events):
    def __init__(self, name: str, quiet: bool = False, live: bool | None = None) -> None:
        self.name, self.quiet = name, quiet
        self.live = sys.stderr.isatty() and not quiet if live is None else live
        self.total = self.finished_count = self.failed = 0
        self.labels: dict[str, str] = {}
        self.running: dict[str, _Running] = {}
        self.ended_runs: dict[str, _Running] = {}  # work items that ended, for their runs' results
        self.durations: list[float] = []
        self.concurrency = 1
        self.began = time.monotonic()
        self.progress = None
        self.header = None

    # --- events ---------------------------------------------------------------------

    def begin(self, states) -> None:
        self.total = len(states)  # a sequential study begins once per look: counts are per look
        self.finished_count = self.failed = 0
        self.labels = {s.id: s.planned.label for s in states}
        if self.live:
            self._start_live()

    def started(self, rid: str, epochs: int, steps: int, start_epoch: int, runs: int = 1) -> None:
        self._drop(rid)  # a seed group that resumes from two epochs starts twice
        run = _Running(epochs, steps, start_epoch, epoch=start_epoch, step=-1, runs=runs)
        self.running[rid] = run
        self.concurrency = max(self.concurrency, len(self.running))
        if self.progress is not None:
            run.task = self.progress.add_task(
                rid, total=epochs * steps, completed=start_epoch * steps, info=self._epoch_info(run)
            )
        elif not self.quiet:
            note = f" (resuming after epoch {start_epoch})" if start_epoch else ""
            batched = f" ({runs} seeds batched)" if runs > 1 else ""
            say(f"{rid}: training {epochs} epochs x {steps} steps{batched}{note}")
        self._refresh()

    def step(self, rid: str, epoch: int, step: int) -> None:
        run = self.running.get(rid)
        if run is None:
            return
        run.epoch, run.step = epoch, step
        if self.progress is not None and run.task is not None:
            self.progress.update(run.task, completed=epoch * run.steps + step + 1, info=self._epoch_info(run))
        elif not self.quiet and time.monotonic() - run.last_line >= HEARTBEAT_S:
            run.last_line = time.monotonic()
            say(f"{rid}: epoch {epoch + 1}/{run.epochs} step {step + 1}/{run.steps}")
        self._refresh()

    def epoch(self, rid: str, row: dict) -> None:
        run = self.running.get(rid)
        if run is None:
            return
        run.epoch, run.step, run.last_line = row["epoch"], -1, time.monotonic()
        run.info = _row_info(row)
        if self.progress is not None and run.task is not None:
            self.progress.update(run.task, completed=row["epoch"] * run.steps, info=self._epoch_info(run))
            if self.total == 1:  # one run: its epochs stay on screen above the bar, as a log
                self._print(f"{rid}: {epoch_text(row, run.epochs)}")
        elif not self.quiet:
            say(f"{rid}: {epoch_text(row, run.epochs)}")
        self._refresh()

    def ended(self, rid: str) -> None:
        run = self._drop(rid)
        if run is not None:
            self.ended_runs[rid] = run

    def finished(self, result: Result) -> None:
        run = self._drop(result.id) or self.ended_runs.get(result.item)
        self.finished_count += 1
        if result.status == "done" and result.seconds:
            self.durations.append(result.seconds / max(1e-9, 1 - (run.start_epoch / run.epochs if run else 0)))
        if result.status not in ("done", "reused"):
            self.failed += 1
        if self.total > 1 or result.status in ("done", "reused"):  # a lone run's failure is the Error line
            self._print(self._finished_text(result))
        self._refresh()

    def note(self, message: str, quiet_too: bool = True) -> None:
        if quiet_too or not self.quiet:
            self._print(message)

    def waiting(self, ids: list[str]) -> None:
        if self.header is None and not getattr(self, "_said_waiting", False):
            self._said_waiting = True
            self._print(f"waiting for {len(ids)} run(s) that another process is training: {', '.join(ids[:3])}")
        self._refresh(waiting=len(ids))

    def end(self) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None

    def _drop(self, rid: str) -> _Running | None:
        run = self.running.pop(rid, None)
        if run is not None and self.progress is not None and run.task is not None:
            self.progress.remove_task(run.task)
        return run

    # --- rendering --------------------------------------------------------------------

    def _finished_text(self, r: Result) -> str:
        place = f"[{self.finished_count}/{self.total}]" if self.total > 1 else ""
        if r.status == "reused":
            return f"{place} {r.id}: already done, reusing it (--force trains it again)".lstrip()
        if r.status == "done":
            metric = next((k for k in ("test_acc", "test_mlm_acc", "test_loss") if r.summary.get(k) is not None), None)
            shown = f"  {metric} {r.summary[metric]:.4f}" if metric else ""
            return f"{place} {r.id}: done{shown}  {r.seconds:.1f}s".lstrip()
        return f"{place} {r.id}: {r.status}: {r.error}".lstrip()

    def _print(self, text: str) -> None:
        if self.progress is not None:
            self.progress.console.print(text, markup=False, highlight=False, soft_wrap=True)
        else:
            say(text)

    def _start_live(self) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(bar_width=24),
            MofNCompleteColumn(),
            TextColumn("{task.fields[info]}"),
            console=err_console,
            transient=True,
            refresh_per_second=4,
        )
        self.progress.start()
        self.header = self.progress.add_task(self.name, total=self.total, completed=0, info="")
        self._refresh()

    def _refresh(self, waiting: int = 0) -> None:
        if self.progress is None or self.header is None:
            return
        running = sum(r.runs for r in self.running.values())
        left = self.total - self.finished_count - running
        parts = [
            f"{self.finished_count - self.failed} done",
            f"{running} running",
            f"{self.failed} failed",
            f"{left} left",
        ]
        if waiting:
            parts.append(f"waiting for {waiting} held by another process")
        eta = self.eta()
        if eta is not None:
            parts.append(f"ETA {_clock(eta)}")
        self.progress.update(self.header, completed=self.finished_count, info="  ".join(parts))

    def eta(self) -> float | None:
        """Seconds to the end: remaining runs x the time one run takes, over the runs at once."""
        per_run = statistics.mean(self.durations) if self.durations else None
        if per_run is None:
            guesses = [  # a seed group's time shared among its runs, as their results will say
                (time.monotonic() - r.began) / (r.fraction - r.start_epoch / r.epochs) / r.runs
                for r in self.running.values()
                if r.fraction - r.start_epoch / max(1, r.epochs) > 0.02
            ]
            per_run = statistics.mean(guesses) if guesses else None
        if per_run is None:
            return None
        running = self.running.values()
        left = self.total - self.finished_count - sum(r.runs for r in running)
        remaining = sum((1 - r.fraction) * per_run * r.runs for r in running) + left * per_run
        return remaining / max(1, self.concurrency)

    def _epoch_info(self, run: _Running) -> str:
        return f"epoch {min(run.epoch + 1, run.epochs)}/{run.epochs}  {run.info}".rstrip()


def _row_info(row: dict) -> str:
    parts = [f"loss {row['train_loss']:.4f}"]
    if "val_acc" in row:
        parts.append(f"val {row['val_acc']:.4f}")
    elif "val_mlm_acc" in row:
        parts.append(f"val_mlm_acc {row['val_mlm_acc']:.4f}")
    return " ".join(parts)


def _clock(seconds: float) -> str:
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"
