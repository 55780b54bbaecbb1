"""The stages point down (shared/STYLE.md rule 9): a module never imports one from a
higher stage.

    cli -> study -> train -> analysis -> evaluation -> store -> data -> spec -> ops
        -> models -> leaves (errors, schema, safeyaml, devices, threads, signals,
           optimizers, files, vocabulary, datasets, events,
           keyvalue)

Every `import masklab...` in every module, including imports inside functions, is
checked against this order, so a shortcut that reaches up fails here. Each stage is a
package or module of its own: no module is given a stage between two others.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "masklab"

ORDER = [  # lowest first
    "masklab",  # the leaves: masklab/*.py not named below (and __version__)
    "masklab.models",
    "masklab.ops",
    "masklab.spec",
    "masklab.data",
    "masklab.store",
    "masklab.evaluation",
    "masklab.analysis",
    "masklab.train",
    "masklab.study",
    "masklab.cli",
    "masklab.__main__",
]
STAGES = {name: level for level, name in enumerate(ORDER)}
LEAVES = {
    "errors",
    "schema",
    "safeyaml",
    "devices",
    "threads",
    "signals",
    "optimizers",
    "files",
    "vocabulary",
    "datasets",
    "events",
    "keyvalue",
}


def stage(module: str) -> int:
    best = max((k for k in STAGES if module == k or module.startswith(k + ".")), key=len)
    return STAGES[best]


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported(tree: ast.AST, here: str) -> set[str]:
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names if a.name.startswith("masklab"))
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("masklab"):
            for a in node.names:  # `from masklab.ops import keyed` imports masklab.ops.keyed
                full = f"{node.module}.{a.name}"
                names.add(
                    full if (PACKAGE.parent / full.replace(".", "/")).with_suffix(".py").exists() else node.module
                )
    return names - {here}


MODULES = sorted(PACKAGE.rglob("*.py"))


def test_every_top_level_module_is_a_stage_or_a_leaf():
    top = {p.stem for p in PACKAGE.glob("*.py")} | {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").exists()}
    staged = {name.split(".")[1] for name in ORDER[1:]}
    assert top - staged - {"__init__"} == LEAVES


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_point_down(path: Path):
    here = module_name(path)
    up = [m for m in imported(ast.parse(path.read_text()), here) if stage(m) > stage(here)]
    assert not up, f"{here} (stage {stage(here)}) imports higher stages: {sorted(up)}"


def test_the_check_catches_an_upward_import(tmp_path):
    tree = ast.parse("def f():\n    from masklab.study import runner\n")
    assert [m for m in imported(tree, "masklab.evaluation.stored") if stage(m) > stage("masklab.evaluation.stored")]


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The modules on a cycle of `graph`, one list per cycle, by depth-first search."""
    cycles, done = [], set()

    def visit(node: str, path: list[str]) -> None:
        if node in path:
            cycles.append(path[path.index(node) :])
            return
        if node in done:
            return
        for nxt in sorted(graph.get(node, ())):
            visit(nxt, [*path, node])
        done.add(node)

    for node in sorted(graph):
        visit(node, [])
    return cycles


def test_the_data_stage_has_no_import_circle():
    """Every import counts, inside functions too: a reader never reaches back to the source
    table (npz files load their source dataset through Lookup.load)."""
    data = {module_name(p): p for p in MODULES if module_name(p).startswith("masklab.data")}
    graph = {name: {m for m in imported(ast.parse(p.read_text()), name) if m in data} for name, p in data.items()}
    assert import_cycles(graph) == []
    assert import_cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == [["a", "b", "c"]]


def test_every_dataset_source_names_a_reader_with_load_and_inputs():
    import importlib

    from masklab import datasets

    for source in datasets.SOURCES:
        module = importlib.import_module(f"masklab.data.{source.reader}")
        assert callable(getattr(module, "load", None)) and callable(getattr(module, "inputs", None)), source.name
