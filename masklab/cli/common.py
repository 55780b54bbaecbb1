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
from typer.core import TyperArgument, TyperCommand, TyperOption

from masklab import signals
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
HeaderOption = Annotated[
    bool,
    typer.Option(
        "--header/--no-header",
        help="In a pipe (tab-separated) and in csv: the header row first (default), or no header row, e.g. for sort.",
    ),
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


class _ReadableArgument(TyperArgument):
    """`SPEC`, `[SPEC]`, `RUN...` in the usage line; no Python type beside the name."""

    def display_type_rich(self, ctx) -> str | None:
        return None

    def _usage_display_name(self) -> str:
        name = self.metavar or (self.name or "").upper()
        if self.nargs != 1 and not name.endswith("..."):
            name += "..."
        return name if self.required else f"[{name}]"


class _ReadableOption(TyperOption):
    """Flags show no type; a value shows its metavar, or a word for its type (TEXT,
    INTEGER, PATH, a choice list) instead of `<list[str]>`."""

    def display_type_rich(self, ctx) -> str | None:
        if self.is_flag:
            return None
        return self.metavar or _type_word(getattr(getattr(self, "type_descriptor", None), "annotation", None))


def _type_word(annotation) -> str:
    args = getattr(annotation, "__args__", None)
    if args and getattr(annotation, "__origin__", None) is list:
        annotation = args[0]
    if isinstance(annotation, type) and issubclass(annotation, Enum):
        return "|".join(str(m.value) for m in annotation)
    return {int: "INTEGER", float: "NUMBER", Path: "PATH"}.get(annotation, "TEXT")


def readable_params(params: list) -> list:
    """Give typer's parameters the readable help above (in place), their help text
    shown as written (once: a parameter changes class the first time only)."""
    for p in params:
        if type(p) is TyperArgument:
            p.__class__ = _ReadableArgument
            p.help = plain_help(p.help)
        elif type(p) is TyperOption:
            p.__class__ = _ReadableOption
            p.help = plain_help(p.help)
    return params


def plain_help(text: str | None) -> str | None:
    """Help text shown as written: typer reads help as rich markup, where `[mlflow]` in
    `pip install 'masklab[mlflow]'` is a style tag and vanishes; escaped, it stays."""
    from rich.markup import escape

    return escape(text) if text else text


class ReadableCommand(TyperCommand):
    """A command whose --help reads like a man page: `masklab train [OPTIONS] SPEC`."""

    def get_params(self, ctx) -> list:
        return readable_params(super().get_params(ctx))


RunRefsArgument = Annotated[
    list[str],
    typer.Argument(
        metavar="RUN_GROUP_OR_STUDY...",
        help="Runs (id, id prefix, <name>-s<seed>, a path in the runs folder), spec names, groups or studies.",
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
    reflow the docstring that --help shows. A failure of the machine rather than the
    input (a full disk, no memory) is one line too; only a bug is an internal error."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except MasklabError as exc:
            say(f"Error: {exc}")
            if exc.exit_code == 130:
                signals.reported()
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt:
            say("Interrupted.")
            signals.reported()
            raise typer.Exit(130) from None
        except BrokenPipeError:  # a pipeline closed stdout early (| head): not an error
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            raise typer.Exit(0) from None
        except (typer.Exit, typer.Abort, SystemExit):
            raise
        except OSError as exc:
            where = f"{exc.filename}: " if exc.filename else ""
            say(
                f"Error: {where}{exc.strerror or exc} (errno {exc.errno}); check the path, the disk and its permissions"
            )
            raise typer.Exit(1) from None
        except MemoryError:
            say("Error: out of memory; reduce train.batch_size, the model size or the data (data.train_limit)")
            raise typer.Exit(1) from None
        except RecursionError:
            say("Error: the input is nested too deeply to read")
            raise typer.Exit(2) from None
        except Exception as exc:
            if os.environ.get("MASKLAB_DEBUG"):
                raise
            if isinstance(exc, RuntimeError) and _out_of_memory(exc):
                say(
                    f"Error: out of memory ({str(exc)[:120]}); reduce train.eval_batch_size, train.batch_size or the model"
                )
                raise typer.Exit(1) from None
            say(
                f"Error: internal error: {type(exc).__name__}: {exc} (set MASKLAB_DEBUG=1 for the traceback and report it)"
            )
            raise typer.Exit(1) from None

    wrapper.__doc__ = plain_help(reflow_help(fn.__doc__))
    return wrapper


def _out_of_memory(exc: BaseException) -> bool:
    from masklab.study.model_memory import is_out_of_memory  # torch is loaded already if torch ran out

    return is_out_of_memory(exc)
