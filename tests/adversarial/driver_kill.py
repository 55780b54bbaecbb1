"""Run the masklab CLI and SIGKILL the process that drives the study at one exact phase:

    python tests/adversarial/driver_kill.py PHASE masklab-arguments...

A `worker-*` phase is one of a `--jobs` worker's: workers are spawned, and each one
imports this file again as `__mp_main__`; there it wraps one masklab function so that
the worker SIGKILLs its driver (its parent) just before that call, waits until the
driver is gone (it is adopted by another process) and goes on, as a worker does when
its driver dies under it. Each worker writes its pid as a file into
the folder $MASKLAB_WORKER_PIDS, so that the caller can wait for the workers to end. A
`ray-*` phase is one of the driver's own (`--executor ray`): the driver SIGKILLs itself.
Used by tests/test_killed_driver.py and tests/adversarial/attack.py.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from phase_hook import wrap  # noqa: E402

WORKER_PHASES = {  # phase -> (function, before or after, which call), in the worker
    "worker-claim": ("masklab.study.lifecycle.find_or_create", "before", 1),  # its first run is not claimed yet
    "worker-step": ("masklab.train.train_epoch", "before", 2),  # its first run is in its second epoch
    "worker-test": ("masklab.study.runner.test_metrics", "before", 1),  # every epoch done, the test evaluation next
    "worker-commit": ("masklab.study.lifecycle._finish", "before", 1),  # the run is being marked done
}
DRIVER_PHASES = {  # in the driver of --executor ray
    "ray-claim": ("masklab.study.executors.ray_tasks.RayTasks._claim", "before", 1),  # no run claimed yet
    "ray-epoch": ("masklab.study.executors.ray_tasks._write_files", "after", 1),  # a first epoch shipped back
    "ray-test": ("masklab.study.executors.ray_tasks._write_files", "after", 2),  # the 2nd (with 2 epochs: testing)
    "ray-commit": ("masklab.store.runs.RunStore.commit", "before", 1),  # a finished folder arrived, not committed
}
PHASES = [*WORKER_PHASES, *DRIVER_PHASES]


def arm_worker(phase: str) -> None:
    """In a spawned worker: wrap the phase's function once this worker trains (by then it
    has set its threads, so importing torch here changes nothing)."""
    import masklab.study.executors.local as local

    Path(os.environ["MASKLAB_WORKER_PIDS"], str(os.getpid())).touch()
    driver, original = os.getppid(), local.train_item

    def gone() -> None:  # SIGKILL lands when the driver next runs: on a busy machine, later
        while os.getppid() == driver:
            time.sleep(0.005)

    def train_item(*args, **kwargs):
        if local.train_item is train_item:
            local.train_item = original
            # the driver while it is this worker's parent; never whoever adopts the worker after it
            parent = lambda: driver if os.getppid() == driver else None  # noqa: E731
            wrap(*WORKER_PHASES[phase], signal.SIGKILL, pid=parent, then=gone)
        return original(*args, **kwargs)

    local.train_item = train_item


if __name__ == "__mp_main__" and os.environ.get("MASKLAB_KILL_DRIVER_AT") in WORKER_PHASES:
    arm_worker(os.environ["MASKLAB_KILL_DRIVER_AT"])

if __name__ == "__main__":
    phase = sys.argv[1]
    os.environ["MASKLAB_KILL_DRIVER_AT"] = phase  # the spawned workers read it
    if phase in DRIVER_PHASES:
        wrap(*DRIVER_PHASES[phase], signal.SIGKILL)
    sys.argv = ["masklab", *sys.argv[2:]]
    from masklab.__main__ import main

    main()
