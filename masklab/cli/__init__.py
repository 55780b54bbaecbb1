"""The command line: one thin module per command (parse, call the library, render).

Importing this package does not import torch: `masklab --help` starts at once."""

from __future__ import annotations

from typing import Annotated

import typer

from masklab import __version__
from masklab.cli import (
    compare as compare_cli,
    eval as eval_cli,
    mask as mask_cli,
    noise as noise_cli,
    runs as runs_cli,
    train as train_cli,
)

app = typer.Typer(
    name="masklab",
    help=(
        "Does masking or noise help, which kind, and is the difference real? "
        "Train small models on masked or noised data from YAML specs and compare runs over seeds.\n\n"
        "stdout is data, stderr is talk. Exit codes: 0 ok; 1 the work failed (missing data, diverged "
        "training, runs not found); 2 bad usage or invalid spec; 3 a --fail-if gate tripped; 130 interrupted."
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
    pass


app.command("mask")(mask_cli.mask)
app.command("noise")(noise_cli.noise)
app.command("train")(train_cli.train)
app.command("eval")(eval_cli.eval)
app.command("compare")(compare_cli.compare)
app.command("runs")(runs_cli.runs)
app.command("show")(runs_cli.show)


def main() -> None:
    app()
