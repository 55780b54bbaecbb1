"""Schedules: a rate or strength that changes over epochs or steps. No torch here.

`{schedule: linear, start: 0.5, end: 0.1, warmup: 0, over: epoch}`: after `warmup`
units (a linear ramp from 0 to `start`), progress p runs from 0 at the first unit to 1
at the last, and the value is start -> end along the named curve."""

from __future__ import annotations

import math


def progress(schedule: dict, epoch: int, step: int, epochs: int, steps_per_epoch: int) -> tuple[float, float]:
    """(t, total) in the schedule's units: epochs, or steps counted from the start."""
    if schedule["over"] == "step":
        return float(epoch * steps_per_epoch + step), float(epochs * steps_per_epoch)
    return float(epoch), float(epochs)


def value(schedule: dict, epoch: int, step: int, epochs: int, steps_per_epoch: int) -> float:
    t, total = progress(schedule, epoch, step, epochs, steps_per_epoch)
    start, end, warmup = schedule["start"], schedule["end"], schedule["warmup"]
    if t < warmup:
        return start * t / warmup
    p = min(1.0, (t - warmup) / max(1.0, total - 1.0 - warmup))
    kind = schedule["schedule"]
    if kind == "constant":
        return start
    if kind == "linear":
        return start + (end - start) * p
    if kind == "cosine":
        return end + (start - end) * 0.5 * (1.0 + math.cos(math.pi * p))
    return start if p < schedule["at"] else end  # step
