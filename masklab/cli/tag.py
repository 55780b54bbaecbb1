"""masklab tag: tags and a note on runs, shown by `runs` and usable by `compare --name-by`."""

from __future__ import annotations

from typing import Annotated

import typer

from masklab.cli.common import Format, FormatOption, HeaderOption, RunsDirOption, cli_command


@cli_command
def tag(
    ref: Annotated[
        str,
        typer.Argument(
            metavar="RUN_OR_GROUP",
            help="A run (id, id prefix, <name>-s<seed>, a path in the runs folder), or a spec name, group or study for all its runs.",
        ),
    ],
    tags: Annotated[
        list[str] | None,
        typer.Argument(metavar="KEY=VALUE...", help="Tags to set, e.g. method=static.", show_default=False),
    ] = None,
    note: Annotated[
        str | None, typer.Option("--note", metavar="TEXT", help="A free-text note on the run(s); '' clears it.")
    ] = None,
    remove: Annotated[
        list[str] | None, typer.Option("--remove", metavar="KEY", help="Remove a tag (repeatable).")
    ] = None,
    runs_dir: RunsDirOption = None,
    fmt: FormatOption = Format.table,
    header: HeaderOption = True,
) -> None:
    """Tag runs and write a note on them; with no tags, --note or --remove, show their tags.

    Tags live in run.json (one atomic rewrite, under the run's lock: a run being trained
    cannot be tagged until it ends). Only run folders of the runs folder are tagged, never
    a damaged one (its run.json is not rewritten: nothing is tagged, and the error names
    the file). `masklab runs` shows them and filters on them
    (--tag KEY=VALUE), `compare --name-by KEY` names groups by them, and exports carry
    them to MLflow as tags (the note as the run's description).

    Examples:

      masklab tag quickstart-static method=static --note 'one mask per image'

      masklab tag quickstart method=dynamic

      masklab compare quickstart quickstart-static --name-by method
    """
    from masklab.cli.runs import tags_text
    from masklab.cli.tables import Column, render
    from masklab.keyvalue import parse_key_values
    from masklab.store import housekeeping
    from masklab.store.runs import RunStore

    store = RunStore(runs_dir)
    runs = store.resolve_many(ref)
    new = parse_key_values(tags or [], "", "method=static")
    if new or note is not None or remove:
        for run in runs:
            store.own(run)  # only run folders of this store are written
        housekeeping.refuse_damaged(runs, "tagged")
        housekeeping.refuse_locked(runs, "tagged")
        for run in runs:
            housekeeping.annotate(run, new, remove or [], note)
    rows = [{"run": r.id, "tags": tags_text(r.info.get("tags")), "note": r.info.get("note")} for r in runs]
    render(rows, [Column("run", id=True), Column("tags"), Column("note")], fmt.value, title="tags", header=header)
