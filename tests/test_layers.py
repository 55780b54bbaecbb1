"""The stages point down (STYLE.md): a module never imports one from a higher stage.

    cli -> study -> train -> evaluation/analysis -> store.reload/exporters -> data/spec/devices
        -> ops -> store/schema -> models/errors

Every `import masklab...` in every module, including imports inside functions, is
checked against this order, so a shortcut that reaches up fails here.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "masklab"

# higher number = higher stage; a module may import its own stage or lower ones
STAGES = {
    "masklab.__main__": 100,
    "masklab.cli": 90,
    "masklab.study": 80,
    "masklab.train": 70,
    "masklab.train_batched": 70,
    "masklab.evaluation": 60,
    "masklab.analysis": 60,
    "masklab.store.reload": 55,
    "masklab.store.exporters": 55,  # reads run folders and specs; writes to trackers
    "masklab.data": 50,
    "masklab.spec": 50,
    "masklab.devices": 50,
    "masklab.ops": 40,
    "masklab.store": 30,
    "masklab.schema": 30,
    "masklab.safeyaml": 30,
    "masklab.models": 20,
    "masklab.optimizers": 20,
    "masklab.threads": 10,
    "masklab.errors": 10,
    "masklab.signals": 10,
    "masklab": 10,  # the package itself: __version__
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


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_point_down(path: Path):
    here = module_name(path)
    up = [m for m in imported(ast.parse(path.read_text()), here) if stage(m) > stage(here)]
    assert not up, f"{here} (stage {stage(here)}) imports higher stages: {sorted(up)}"


def test_the_check_catches_an_upward_import(tmp_path):
    tree = ast.parse("def f():\n    from masklab.study import runner\n")
    assert [m for m in imported(tree, "masklab.evaluation.stored") if stage(m) > stage("masklab.evaluation.stored")]
