"""The `masklab` command. SIGINT and SIGTERM are caught first, before anything heavy is
imported, so an interruption at any moment ends the command with exit 130 and one line."""

import os
import signal
import sys

_early: list[int] = []


def _hold(signum, frame) -> None:
    _early.append(signum)  # delivered again once masklab.signals handles it


def main() -> None:
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, _hold)
    try:
        from masklab import signals

        signals.install()
        if _early:
            os.kill(os.getpid(), _early[-1])
        from masklab.cli import app

        app()
        code = 0
    except KeyboardInterrupt:  # before a command started (importing, parsing the arguments)
        code = 130
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):  # the exit code is decided: a late signal changes nothing
            signal.signal(sig, signal.SIG_IGN)
    if code == 130 and not _reported():  # typer ends an interrupted argument parse silently
        print("Interrupted.", file=sys.stderr)
    sys.exit(code)


def _reported() -> bool:
    signals = sys.modules.get("masklab.signals")
    return signals is not None and signals.was_reported()


if __name__ == "__main__":
    main()
