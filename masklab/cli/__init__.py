"""The command line: one thin module per command (parse, call the library, render).

Importing this package does not import torch: `masklab --help` starts at once."""

from __future__ import annotations

import sys
from typing import Annotated

import typer
from typer.core import TyperGroup

from masklab import __version__, signals
from masklab.cli import (
    compare as compare_cli,
    eval as eval_cli,
    export as export_cli,
    mask as mask_cli,
    noise as noise_cli,
    remove as remove_cli,
    runs as runs_cli,
    search as search_cli,
    tag as tag_cli,
    train as train_cli,
)
from masklab.cli.common import ReadableCommand, readable_params, say

# click's base exception, reached through a public name: typer vendors click in recent
# releases and imports it in older ones.
_ClickException = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException")


class _OneLineErrors(TyperGroup):
    """Usage errors (a missing argument, an unknown option) as one `Error: ...` line on
    stderr with exit 2, like masklab's own errors, instead of a boxed usage block."""

    def get_params(self, ctx) -> list:
        return readable_params(super().get_params(ctx))

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        try:
            code = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except _ClickException as exc:
            if type(exc).__name__ == "NoArgsIsHelpError":
                sys.exit(0)  # bare `masklab`: the help was printed, nothing went wrong
            ctx = getattr(exc, "ctx", None)
            hint = f"; see '{ctx.command_path} --help'" if ctx is not None else ""
            say(f"Error: {exc.format_message().rstrip('.')}{hint}")
            sys.exit(exc.exit_code)
        except typer.Abort:
            say("Interrupted.")
            signals.reported()
            sys.exit(130)
        sys.exit(code if isinstance(code, int) else 0)


app = typer.Typer(
    name="masklab",
    cls=_OneLineErrors,
    help=(
        "Does masking or noise help, which kind, and is the difference real? "
        "Train small models on masked or noised data from YAML specs and compare runs over seeds.\n\n"
        "stdout is data, stderr is talk. Exit codes: 0 ok; 1 the work failed (missing data, diverged "
        "training, runs not found); 2 bad usage or invalid spec; 3 a --fail-if gate tripped or could not be evaluated; 130 interrupted."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"masklab {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool | None, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = None,
) -> None:
    from masklab import threads

    threads.begin()  # every command: threads sleep until a training decides (before torch loads)


for _name, _fn in {
    "train": train_cli.train,
    "runs": runs_cli.runs,
    "show": runs_cli.show,
    "eval": eval_cli.eval,
    "compare": compare_cli.compare,
    "search": search_cli.search,
    "mask": mask_cli.mask,
    "noise": noise_cli.noise,
    "tag": tag_cli.tag,
    "rm": remove_cli.rm,
    "prune": remove_cli.prune,
    "export": export_cli.export,
}.items():
    app.command(_name, cls=ReadableCommand)(_fn)


def main() -> None:
    app()
