"""README and CI stay true to the code."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

from masklab import spec as spec_mod
from masklab.ops import registry

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def test_ci_runs_the_readme_test_command_verbatim():
    commands = re.findall(r"^(python3 -m venv .*)$", README, flags=re.M)
    assert len(commands) == 2 and "masklab train experiments/quickstart.yaml" in commands[0]
    assert commands[1] in (ROOT / ".ci" / "run").read_text().splitlines()


def test_every_spec_key_and_op_is_documented():
    for section in (spec_mod.DataSpec, spec_mod.TrainSpec, spec_mod.EvalSpec):
        prefix = {spec_mod.DataSpec: "data.", spec_mod.TrainSpec: "train.", spec_mod.EvalSpec: "eval."}[section]
        for f in dataclasses.fields(section):
            assert f"`{prefix}{f.name}`" in README, f"{prefix}{f.name} missing from the README spec reference"
    for cls in spec_mod.MODEL_SPECS.values():
        for f in dataclasses.fields(cls):
            assert f"model.{f.name}" in README, f"model.{f.name} missing from the README"
    for name in registry.OPS:
        assert f"| `{name}` |" in README, f"op {name} missing from the README"


def test_readme_states_every_verdict_rule_word_for_word():
    from masklab.analysis import stats

    for word, rule in stats.VERDICT_RULES.items():
        assert f"| `{word}` | {rule} |" in README, f"verdict {word!r}: README's rule differs from stats.VERDICT_RULES"


def test_the_readme_lists_the_dataset_sources_from_their_table():
    from masklab import datasets

    assert "## Data\n\nThe sources, from their table" in README
    assert "\n" + datasets.markdown_table() + "\n" in README, "README's Data table differs: python -m masklab.datasets"
    listed = "images: " + ", ".join(f"`{f}`" for f in datasets.forms("images"))
    assert f"| `data.dataset` | `mnist-mini` | {listed}; text: " in README


def test_where_things_are_names_only_paths_that_exist():
    """Every module the README's map names exists, but in the 'before' column of what moved."""
    section = README[README.index("## Where things are\n") : README.index("## Development\n")]
    maps, moved = section.split("What issue 23 moved")
    named = re.findall(r"`([a-z_/*]+\.py|[a-z_]+/)`", maps)
    named += [p for line in moved.splitlines()[4:] for p in re.findall(r"`([a-z_/]+\.py)`", line.split(" | ")[-1])]
    assert len(named) > 50
    for path in named:
        found = [*(ROOT / "masklab").glob(path), *(ROOT / "masklab").glob(f"*/{path}"), *ROOT.glob(path)]
        assert found, f"README's 'Where things are' names {path}, which does not exist"
