"""What a name on the command line stands for: the runs it names, or one line saying why
it names none, or more than one thing.

Every command that takes a run name resolves it here: compare, show, eval and its
--baseline, rm, tag, export, `runs --name` and `train.init_from`.

| a name | stands for |
|---|---|
| a run id, or a path whose folder is the runs folder | that run |
| a group, `<name>-<hash>` | its runs |
| a spec name | its runs |
| a study (a spec with variants or a grid) | the runs of its variants and cells |
| `<name>-search` | the trials of the search of spec `<name>` |
| `<name>-s<seed>` | the run of that name and seed |
| a prefix of an id that covers its whole name and part of its hash | the run it begins |

**One name, one meaning.** Where a name stands for several groups of runs in one place,
nothing is pooled and nothing is picked: the name is refused in one line that lists the
groups (name-hash, runs, created) and how to name one, as git refuses an ambiguous
argument and DVC an experiment name that two experiments share. That is the case for

- a spec name trained from two specs (an edited file, another `--set`): two groups of
  one name;
- a study trained again with other settings: two groups for one of its run names;
- a name that is both a study (or a search's trials) and the spec name of runs outside it;
- `<name>-search` for the trials of two searches (another spec or search space);
- `<name>-s<seed>` or an id prefix that matches runs of several groups.

A study's variants and cells, and a search's trials, are different groups by design: the
name stands for all of them. The refusal is a RunError (exit 1), like a name that matches nothing.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

from masklab.errors import RunError
from masklab.store.folder import Run

if TYPE_CHECKING:
    from masklab.store.runs import RunStore

RUN_ID = re.compile(r"(?P<name>.+)-(?P<hash>[0-9a-f]{8})-s(?P<seed>\d+)")
SHOWN = 6  # groups or runs listed in a refusal before "..."
MEANINGS = ("study", "search", "group", "name")  # what a name can be to a run, in the order a refusal lists them


class Ambiguous(RunError):
    """A name that stands for several runs where one is meant, or several groups where one
    group (or one study) is meant: what it matches (`reason`), then how to name one."""

    def __init__(self, reason: str, fix: str) -> None:
        super().__init__(f"{reason}; {fix}")
        self.reason = reason


class Found(NamedTuple):
    """Every run a name could mean, and how it names them: path, id, name (a spec name,
    group or study), prefix or seed (`<name>-s<seed>`)."""

    runs: list[Run]
    how: str


def lookup(store: RunStore, ref: str) -> Found:
    """Every run `ref` could mean ([] when none). RunError for a path outside the store."""
    if is_path(ref):
        return Found([_by_path(store, ref)], "path")
    exact = store.get(ref) if ref and not ref.startswith(".") else None
    if exact:
        return Found([exact], "id")
    runs = store.all()
    by_name = [r for r in runs if ref in names_of(r)]
    if by_name:
        if any(r.info.get("study") == ref for r in by_name):  # a study: its variants in the file's order
            by_name.sort(key=lambda r: r.info.get("variant") if isinstance(r.info.get("variant"), int) else 0)
        return Found(by_name, "name")
    prefixed = [r for r in runs if _prefix_of(ref, r.id)]
    if prefixed:
        return Found(prefixed, "prefix")
    return Found(_by_name_and_seed(runs, ref), "seed")


def resolve_many(store: RunStore, ref: str, study_only: bool = False) -> list[Run]:
    """The runs `ref` names: a study, spec name or group names all its runs, anything else
    one run. Ambiguous when it stands for several groups in one place (module docstring);
    with `study_only`, a study's name stands for the study's runs alone."""
    found = lookup(store, ref)
    if found.how != "name":
        return [_one(store, ref, found)]
    runs = found.runs
    if study_only and any(_meaning(ref, r) == "study" for r in runs):
        runs = [r for r in runs if _meaning(ref, r) == "study"]
    _refuse_several_meanings(ref, runs)
    return runs


def resolve(store: RunStore, ref: str) -> Run:
    """The one run `ref` names. Ambiguous when it names several, RunError when none."""
    return _one(store, ref, lookup(store, ref))


def _one(store: RunStore, ref: str, found: Found) -> Run:
    if len(found.runs) == 1:
        return found.runs[0]
    if not found.runs:
        raise RunError(f"{ref}: no such run in {store.root}; `masklab runs` lists them (or pass --runs-dir)")
    groups = _by_group(found.runs)
    if len(groups) > 1:
        newest = max(found.runs, key=_age)
        raise Ambiguous(f"{ref}: matches runs of {_groups_text(groups)}", f"name one run by its id, e.g. {newest.id}")
    (group, runs), *_ = groups.items()
    runs = sorted(runs, key=lambda r: (not isinstance(r.info.get("seed"), int), r.info.get("seed") or 0, r.id))
    seeds = ", ".join(str(r.info.get("seed", "?")) for r in runs[:SHOWN]) + (", ..." if len(runs) > SHOWN else "")
    example = f"{names_of(runs[0])[0]}-s{runs[0].info.get('seed')}"
    if len(lookup(store, example).runs) != 1:  # another group has that name and seed, or it has no seed
        example = runs[0].id
    raise Ambiguous(f"{ref}: matches {len(runs)} runs (seeds {seeds} of {group})", f"name one, e.g. {example}")


def _refuse_several_meanings(ref: str, runs: list[Run]) -> None:
    """Ambiguous when `ref` means two things at once (a study or a search's trials, and a
    spec name outside it), the trials of several searches, or two groups of one run name
    (a spec, or a study's variant or cell, trained from two specs)."""
    by_meaning: dict[str, list[Run]] = {}
    for run in runs:
        by_meaning.setdefault(_meaning(ref, run), []).append(run)
    if len(by_meaning) > 1:
        what = " and, outside it, ".join(_meaning_text(ref, m, rs) for m, rs in sorted(by_meaning.items(), key=_first))
        plain = _by_group(by_meaning.get("name") or runs)
        raise Ambiguous(f"{ref}: names {what}", f"name the groups you mean, e.g. {list(plain)[-1]}{_listed(ref)}")
    if "search" in by_meaning:
        _refuse_several_searches(ref, runs)
        return
    by_name: dict[str, list[Run]] = {}
    for run in runs:
        by_name.setdefault(str(names_of(run)[0]), []).append(run)
    clashing = [groups for groups in map(_by_group, by_name.values()) if len(groups) > 1]
    if not clashing:
        return
    groups = clashing[0]
    if "study" in by_meaning:
        more = f" (and so do {len(clashing) - 1} more of its variants or cells)" if len(clashing) > 1 else ""
        name = names_of(next(iter(groups.values()))[0])[0]
        what = f"{len(groups)} groups for its variant or cell {name} (the study trained again with other settings)"
        what = f"{what}: {_list(groups)}{more}"
    else:
        what = _groups_text(groups)
    raise Ambiguous(f"{ref}: names {what}", f"name the group you mean, e.g. {list(groups)[-1]}{_listed(ref)}")


def _refuse_several_searches(ref: str, runs: list[Run]) -> None:
    """A search's trials are different configurations by design, all named `<name>-search`;
    trials of two searches (another spec or search space under one name) are not one thing."""
    searches: dict[str, list[Run]] = {}
    for run in sorted(runs, key=_age):
        searches.setdefault(str(run.info["trial"].get("study")), []).append(run)
    if len(searches) > 1:
        shown = ", ".join(f"{s} ({len(rs)} trial runs, created {_created(rs[0])})" for s, rs in searches.items())
        newest = group_of(max(runs, key=_age))
        raise Ambiguous(
            f"{ref}: names the trials of {len(searches)} searches: {shown}",
            f"name the groups you mean, e.g. {newest}{_listed(ref)}",
        )


def _meaning_text(ref: str, meaning: str, runs: list[Run]) -> str:
    groups = _by_group(runs)
    return {
        "study": f"a study of {len(groups)} groups ({_list(groups, details=False)})",
        "search": f"the trials of a search ({len(groups)} groups: {_list(groups, details=False)})",
        "group": f"the group {ref}",
    }.get(meaning, f"runs of the spec name {ref}: {_list(groups)}")


def _first(item: tuple[str, list]) -> int:
    return MEANINGS.index(item[0])


def _listed(ref: str) -> str:
    return f" (masklab runs --name {ref} lists their runs)"


def _groups_text(groups: dict[str, list[Run]]) -> str:
    """`2 groups, different specs trained under the name x: x-1a (3 runs, created T), x-2b (...)`."""
    names = {str(names_of(rs[0])[0]) for rs in groups.values()}
    same = f", different specs trained under the name {names.pop()}" if len(names) == 1 else ""
    return f"{len(groups)} groups{same}: {_list(groups)}"


def _list(groups: dict[str, list[Run]], details: bool = True) -> str:
    """`g (3 runs, created T), ...`, oldest first, at most SHOWN of them."""

    def one(group: str, runs: list[Run]) -> str:
        count = f"{len(runs)} run{'s' if len(runs) != 1 else ''}"
        return f"{group} ({count}, created {_created(runs[0])})" if details else group

    shown = [one(g, rs) for g, rs in list(groups.items())[:SHOWN]]
    return ", ".join(shown) + (f", ... ({len(groups)} in all)" if len(groups) > SHOWN else "")


def _by_group(runs: list[Run]) -> dict[str, list[Run]]:
    """Runs by group, oldest group first (a group's runs oldest first)."""
    out: dict[str, list[Run]] = {}
    for run in sorted(runs, key=_age):
        out.setdefault(group_of(run), []).append(run)
    return out


def _age(run: Run) -> tuple:
    """Oldest first: by the time a run was created (to the millisecond), then its id."""
    return (str(run.info.get("created") or ""), run.id)


def _created(run: Run) -> str:
    """When a run was created, to the second, as `masklab runs` shows it (2026-12-06 04:46:02)."""
    created = str(run.info.get("created") or "?")
    return created[:19].replace("T", " ") if re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d", created) else created


def _meaning(ref: str, run: Run) -> str:
    """Which of a run's names `ref` is: its study, its group, else its spec name (a search's
    trials share theirs, `<name>-search`)."""
    names = names_of(run)
    if len(names) > 2 and names[2] == ref:
        return "study"
    if len(names) > 1 and names[1] == ref:
        return "group"
    return "search" if isinstance(run.info.get("trial"), dict) else "name"


def names_of(run: Run) -> tuple:
    """The names a run answers to: its spec name, group and study (from its folder name
    when run.json cannot tell)."""
    info = run.info
    if info.get("name"):
        return (info.get("name"), info.get("group"), info.get("study"))
    m = RUN_ID.fullmatch(run.id)
    return (m["name"], f"{m['name']}-{m['hash']}") if m else ()


def group_of(run: Run) -> str:
    """A run's group, `<name>-<hash>` (its id without the seed when run.json cannot tell)."""
    names = names_of(run)
    return str(names[1]) if len(names) > 1 and names[1] else run.id.rsplit("-s", 1)[0]


def is_path(ref: str) -> bool:
    return os.sep in ref or (os.altsep is not None and os.altsep in ref)


def _by_path(store: RunStore, ref: str) -> Run:
    """A path naming a folder directly inside the store (the store's own path may be a link)."""
    path = Path(ref)
    inside = os.path.realpath(path.parent) == os.path.realpath(store.root)
    if not inside or path.name in ("", ".", "..") or path.name.startswith("."):
        raise RunError(
            f"{ref}: not a run folder in the runs folder {store.root}; masklab names runs by id, name or a "
            "path inside it (pass --runs-dir for another runs folder)"
        )
    run = store.get(path.name)
    if run is None:
        raise RunError(f"{ref}: no such run in {store.root}; `masklab runs` lists them (or pass --runs-dir)")
    return run


def _by_name_and_seed(runs: list[Run], ref: str) -> list[Run]:
    """`<name>-s<seed>` (an id without its spec hash): the runs of that name and seed."""
    name, sep, seed = ref.rpartition("-s")
    if not sep or not seed.isdigit():
        return []
    return [r for r in runs if r.info.get("name") == name and r.info.get("seed") == int(seed)]


def _prefix_of(ref: str, rid: str) -> bool:
    """`ref` is a prefix of the run id that covers its whole name and part of its hash:
    `ref` names `ref-1a2b3c4d-s0` only exactly, never `ref2-...`."""
    m = RUN_ID.fullmatch(rid)
    return bool(m) and rid.startswith(ref) and len(ref) > len(m["name"]) + 1
