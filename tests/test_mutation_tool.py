"""tools/mutation.py: its selections name tests that run, and one that does not stops it."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

TOOL = Path(__file__).resolve().parents[1] / "tools" / "mutation.py"


def load_tool():
    spec = importlib.util.spec_from_file_location("mutation_tool", TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_selection_names_tests_the_default_suite_collects():
    tool = load_tool()
    named = sorted({t for _, tests in tool.MODULES.values() for t in tests})
    assert tool.uncollected(named) == []


def test_a_renamed_removed_or_slow_test_stops_the_tool_before_any_mutant(monkeypatch, capsys):
    tool = load_tool()
    gates = "masklab/analysis/gates.py"
    selection = [
        "tests/test_gates.py",
        "tests/test_gates.py::test_no_difference_at_all_is_zero_to_a_gate",
        "tests/test_gates.py::test_no_difference",  # a prefix of a name is not that test
        "tests/test_no_such_file.py",
        "tests/test_ray_node_death.py::test_a_dead_ray_node_is_one_line_and_leaves_the_runs_resumable",  # slow
    ]
    monkeypatch.setattr(tool, "MODULES", {"gates": (gates, selection)})
    monkeypatch.setattr(tool, "run", lambda *a: pytest.fail("a mutant was tested"))
    monkeypatch.setattr(sys, "argv", ["mutation.py", "gates"])
    with pytest.raises(SystemExit) as stop:
        tool.main()
    assert stop.value.code == (
        "tools/mutation.py: the selection of gates names tests the default suite does not collect "
        "(renamed, removed or marked slow): tests/test_gates.py::test_no_difference, tests/test_no_such_file.py, "
        "tests/test_ray_node_death.py::test_a_dead_ray_node_is_one_line_and_leaves_the_runs_resumable; "
        "fix MODULES['gates']"
    )
