"""Run the masklab CLI with a signal sent to itself at one exact phase:

    python tests/adversarial/phase_hook.py PHASE SIGNAL masklab-arguments...

A phase is hit by wrapping one function so that the process signals itself just before
(or after) its n-th call; everything else is the real command (`masklab.__main__.main`).
Used by tests/test_interrupts.py and tests/adversarial/attack.py.
"""

from __future__ import annotations

import functools
import importlib
import os
import signal
import sys

PHASES = {  # phase -> (function, before or after, which call)
    "spec": ("masklab.spec.load_study", "before", 1),
    "data": ("masklab.study.runner.load_data", "before", 1),
    "create": ("masklab.store.runs.RunStore.create", "after", 1),
    "step": ("masklab.train.train_epoch", "before", 2),
    "group-step": ("masklab.train.train_epoch", "before", 2),  # seeds trained batched: the same loop
    "checkpoint": ("masklab.store.checkpoints.write", "before", 1),
    "test": ("masklab.study.runner.test_metrics", "before", 1),
    "summary": ("masklab.study.runner.finish_summary", "after", 1),
    "between": ("masklab.study.runner.train_group", "after", 1),
    "stage": ("masklab.store.runs.RunStore.stage", "after", 1),
    "commit": ("masklab.store.runs.RunStore.commit", "before", 1),
    "eval": ("masklab.evaluation.robustness.robustness_grid", "before", 1),
    "eval-write": ("masklab.store.folder.Run.write_eval", "before", 1),
    "compare": ("masklab.analysis.compare.compare", "before", 1),
}


def wrap(target: str, when: str, nth: int, signum: int, pid=os.getpid, then=None) -> None:
    """Replace `target` (module.function or module.Class.method) by a wrapper that sends
    `signum` to this process (or to `pid()`, unless it is None; then calls `then()`)
    before or after its `nth` call."""
    module, _, attr = target.rpartition(".")
    try:
        owner = importlib.import_module(module)
    except ImportError:
        module, _, cls = module.rpartition(".")
        owner = getattr(importlib.import_module(module), cls)
    original = getattr(owner, attr)
    calls = [0]

    def send() -> None:
        to = pid()
        if to is not None:
            os.kill(to, signum)
            if then is not None:
                then()

    @functools.wraps(original)
    def wrapper(*args, **kwargs):
        calls[0] += 1
        if when == "before" and calls[0] == nth:
            send()
        out = original(*args, **kwargs)
        if when == "after" and calls[0] == nth:
            send()
        return out

    setattr(owner, attr, wrapper)


if __name__ == "__main__":
    phase, name = sys.argv[1], sys.argv[2]
    wrap(*PHASES[phase], getattr(signal, name))
    sys.argv = ["masklab", *sys.argv[3:]]
    try:
        from masklab.__main__ import main
    except ImportError:  # a masklab from before the entry point moved (for comparisons)
        from masklab.cli import main
    main()
