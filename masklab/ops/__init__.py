"""Ops: keyed masks and noise. `registry` (names and checks, no torch), `keyed` (the
random function), `masks` and `noise` (tensor code), `pipeline` (modes, p, ranges and
schedules applied to batches)."""
