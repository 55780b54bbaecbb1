"""masklab rm (named runs) and masklab prune (dead runs, finished runs' checkpoints)."""

from __future__ import annotations

from typing import Annotated

import typer

from masklab.cli.common import Format, FormatOption, HeaderOption, RunRefsArgument, RunsDirOption, cli_command, say

DryRunOption = Annotated[bool, typer.Option("--dry-run", "-n", help="Show what would be removed; remove nothing.")]


def _report(actions, dry_run: bool, fmt: Format, header: bool = True) -> None:
    from masklab.cli.tables import Column, render

    rows = [
        {
            "run": a.run.id,
            "status": a.status,
            "action": ("would " if dry_run else "") + a.what,
            "mb": round(a.bytes / 1e6, 2),
            "path": str(a.run.path),
        }
        for a in actions
    ]
    cols = [
        Column("run", id=True),
        Column("status"),
        Column("action"),
        Column("mb", "MB", digits=2),
        Column("path", table=False),
    ]
    render(rows, cols, fmt.value, title="dry run" if dry_run else "removed", header=header)
    total = sum(a.bytes for a in actions) / 1e6
    say(f"{'would free' if dry_run else 'freed'} {total:.1f} MB in {len(actions)} action(s)")


@cli_command
def rm(
    refs: RunRefsArgument,
    dry_run: DryRunOption = False,
    unlink: Annotated[
        bool,
        typer.Option(
            "--unlink",
            help="Remove symbolic links planted in the runs folder, named by their name there: the link alone, never what it points to.",
        ),
    ] = False,
    runs_dir: RunsDirOption = None,
    fmt: FormatOption = Format.table,
    header: HeaderOption = True,
) -> None:
    """Remove runs: their whole folders, and nothing else.

    Each name must name run folders of the runs folder: an id, <name>-s<seed>, a unique
    id prefix that reaches into the hash, a spec name, group or study, or a path to a run
    folder inside the runs folder. Anything else (a typo, a run already removed, a folder
    elsewhere, a symbolic link in the runs folder) is an error and nothing is removed. A
    run that another process is training is never removed: if any named run is being
    trained, nothing is removed. Each folder is renamed aside, then deleted, so a run
    vanishes at once or not at all. Run ids of the other runs do not change. With
    --unlink, the names are links in the runs folder, and only the links are removed.

    Examples:

      masklab rm quickstart-static --dry-run

      masklab rm quickstart-static
    """
    from masklab.store import housekeeping
    from masklab.store.runs import RunStore

    store = RunStore(runs_dir)
    if unlink:
        _remove(store, housekeeping.unlink_plan(store, refs), dry_run, fmt, header)
        return
    runs = list({str(r.path.absolute()): r for ref in refs for r in store.resolve_many(ref)}.values())
    actions = housekeeping.removal_plan(store, runs)
    housekeeping.refuse_locked(runs, "removed")
    _remove(store, actions, dry_run, fmt, header)


def _remove(store, actions, dry_run: bool, fmt: Format, header: bool) -> None:
    from masklab.store import housekeeping

    if not dry_run:
        for action in actions:
            housekeeping.apply(store, action)
    _report(actions, dry_run, fmt, header)


@cli_command
def prune(
    older_than: Annotated[
        str,
        typer.Option(
            "--older-than",
            metavar="AGE",
            help="Remove failed, interrupted and stale runs idle for longer than this: 30m, 12h, 7d, 2w, 0.",
        ),
    ] = "7d",
    keep_checkpoints: Annotated[
        bool,
        typer.Option(
            "--keep-checkpoints",
            help="Keep checkpoint.pt in finished runs (otherwise removed: only --resume needs it).",
        ),
    ] = False,
    dry_run: DryRunOption = False,
    runs_dir: RunsDirOption = None,
    fmt: FormatOption = Format.table,
    header: HeaderOption = True,
) -> None:
    """Remove dead runs and the checkpoints finished runs no longer need.

    Dead runs are those that failed, were interrupted, or are stale (marked running by a
    process that is gone), idle for longer than --older-than (the time since they last
    finished, started or were created). Finished runs keep model.pt and every result;
    their checkpoint.pt (several MB, only for --resume) goes unless --keep-checkpoints.
    Runs that another process holds are passed by. Only run folders of the runs folder are
    considered: other folders and symbolic links there are left alone (links are named on
    stderr; `masklab rm --unlink NAME` removes one).

    Examples:

      masklab prune --dry-run

      masklab prune --older-than 0 --keep-checkpoints
    """
    import time

    from masklab.store import housekeeping
    from masklab.store.runs import RunStore

    store = RunStore(runs_dir)
    for link in housekeeping.planted_links(store):
        say(f"warning: {link} is a symbolic link, not a run; left alone (masklab rm --unlink {link.name} removes it)")
    actions = housekeeping.prune_plan(store, housekeeping.parse_age(older_than), keep_checkpoints, time.time())
    done = []
    for action in actions:
        if not dry_run:
            try:
                housekeeping.apply(store, action)
            except Exception as exc:  # picked up by another process meanwhile: leave it
                say(f"warning: {action.run.id}: left alone ({exc})")
                continue
        done.append(action)
    _report(done, dry_run, fmt, header)
