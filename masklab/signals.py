"""SIGINT and SIGTERM, one way for the whole command line.

`install()` (the CLI entry point calls it first) routes both signals through
`on_signal`: a signal raises KeyboardInterrupt, so SIGTERM ends a command exactly as
Ctrl-C does, unless

- a `handled_by(fn)` block is active: `fn` decides (the training loop asks to stop
  after the current step), or
- a `deferred()` block is active: the signal waits until the block ends, so a status
  write, a rename that publishes a run or the swap of a replaced run is never cut in
  half. A deferred signal is delivered when the outermost block exits.
- a module is being imported: an exception raised inside an import can leave a C
  extension half-initialised (numpy then fails in odd ways, and some libraries
  swallow the exception, losing the signal). The signal is sent again 50 ms later,
  until it lands outside the import (the same for exec'd code, see `_unsafe`).

Nothing here runs at import time. Without `install()` (masklab used as a library) the
handlers in effect are the caller's own, and `deferred()` defers only when the
installed handler is `on_signal`.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Callable, Iterator

SIGNALS = (signal.SIGINT, signal.SIGTERM)

_handlers: list[Callable[[int], None]] = []
_deferred = 0
_pending: int | None = None
_exiting = False
_reported = False
RETRY_S = 0.05


def _raise(signum: int) -> None:
    raise KeyboardInterrupt


def _unsafe(frame) -> bool:
    """Inside an import, or in the module-level code of an exec'd string (dataclasses and
    namedtuple build methods that way): an exception there can break the interpreter's
    state, or make Python exit by SIGINT even after the exception was handled."""
    while frame is not None:
        code = frame.f_code
        if code.co_filename.startswith("<frozen importlib"):
            return True
        if code.co_filename == "<string>" and code.co_name == "<module>" and frame.f_back is not None:
            return True  # exec'd by a library (`python -c` code is the outermost frame)
        frame = frame.f_back
    return False


def resend(signum: int, delay: float = RETRY_S) -> None:
    """Send `signum` to this process again after `delay` seconds."""
    timer = threading.Timer(delay, os.kill, (os.getpid(), signum))
    timer.daemon = True
    timer.start()


def on_signal(signum: int, frame=None) -> None:
    """The installed handler: defer, hand to the innermost `handled_by`, or raise."""
    global _pending
    if _exiting:
        return
    if _deferred:
        _pending = signum
        return
    if _unsafe(frame):
        resend(signum)
        return
    (_handlers[-1] if _handlers else _raise)(signum)


def reported() -> None:
    """A command printed its one line about the interruption."""
    global _reported
    _reported = True


def was_reported() -> bool:
    return _reported


def install() -> None:
    """Route SIGINT and SIGTERM through `on_signal` (main thread only)."""
    if threading.current_thread() is threading.main_thread():
        for sig in SIGNALS:
            signal.signal(sig, on_signal)


def exiting() -> None:
    """The command has its exit code: later signals are dropped, not turned into tracebacks."""
    global _exiting
    _exiting = True


@contextlib.contextmanager
def deferred() -> Iterator[None]:
    """Hold signals until the block ends (nests); then deliver the last one."""
    global _deferred, _pending
    _deferred += 1
    try:
        yield
    finally:
        _deferred -= 1
        if _deferred == 0 and _pending is not None:
            signum, _pending = _pending, None
            on_signal(signum)


@contextlib.contextmanager
def handled_by(handler: Callable[[int], None]) -> Iterator[None]:
    """Let `handler(signum)` decide what a signal does inside the block. The signals are
    routed through `on_signal` for the block (and restored after), so this works
    without `install()` too."""
    saved = {}
    if threading.current_thread() is threading.main_thread():
        for sig in SIGNALS:
            saved[sig] = signal.signal(sig, on_signal)
    _handlers.append(handler)
    try:
        yield
    finally:
        _handlers.remove(handler)
        for sig, previous in saved.items():
            signal.signal(sig, previous)
