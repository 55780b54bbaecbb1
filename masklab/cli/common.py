"""What every command shares: error handling at the CLI edge, the --format and
--runs-dir options, and the stderr console. No torch here."""

from __future__ import annotations

import functools
import inspect
import os
import sys
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from masklab.errors import MasklabError

err_console = Console(stderr=True, highlight=False)


class Format(str, Enum):
    table = "table"
    json = "json"
    jsonl = "jsonl"
    csv = "csv"
    md = "md"


FormatOption = Annotated[
    Format, typer.Option("--format", "-f", help="Output format: table (rich on a TTY), json, jsonl, csv or md.")
]
RunsDirOption = Annotated[
    Path | None,
    typer.Option(
        "--runs-dir", envvar="MASKLAB_RUNS", help="Folder holding the runs (default: ./runs).", show_default=False
    ),
]

ThreadsOption = Annotated[
    int | None,
    typer.Option(
        "--threads",
        min=1,
        help="CPU threads for torch (default: the cores this process may use, after affinity and cgroup quota).",
        show_default=False,
    ),
]


def say(message: str) -> None:
    """Talk goes to stderr; stdout is data."""
    err_console.print(message, markup=False, soft_wrap=True)


def reflow_help(doc: str | None) -> str | None:
    """Join the wrapped lines of each prose paragraph of a docstring; keep indented
    lines (examples) as written. Typer's rich help prints single newlines verbatim."""
    if not doc:
        return doc
    paragraphs = inspect.cleandoc(doc).split("\n\n")
    return "\n\n".join(
        p if any(line.startswith(" ") for line in p.splitlines()) else " ".join(p.split("\n")) for p in paragraphs
    )


def cli_command(fn):
    """Turn masklab's errors into `Error: ...` on stderr and the documented exit code;
    reflow the docstring that --help shows."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except MasklabError as exc:
            say(f"Error: {exc}")
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt:
            say("Interrupted.")
            raise typer.Exit(130) from None
        except BrokenPipeError:  # a pipeline closed stdout early (| head): not an error
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            raise typer.Exit(0) from None
        except (typer.Exit, typer.Abort, SystemExit):
            raise
        except Exception as exc:
            if os.environ.get("MASKLAB_DEBUG"):
                raise
            say(
                f"Error: internal error: {type(exc).__name__}: {exc} (set MASKLAB_DEBUG=1 for the traceback and report it)"
            )
            raise typer.Exit(1) from None

    wrapper.__doc__ = reflow_help(fn.__doc__)
    return wrapper
