"""The CLI contract: help without torch, exit codes, stdout data / stderr talk."""

from __future__ import annotations

import subprocess
import sys

import pytest

from conftest import cli

COMMANDS = ["train", "eval", "compare", "mask", "noise", "runs", "show", "tag", "rm", "prune", "export"]


def test_importing_the_cli_does_not_import_torch():
    out = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", "import masklab.cli"], capture_output=True, text=True, check=True
    )
    modules = {line.rsplit("|", 1)[-1].strip() for line in out.stderr.splitlines() if "|" in line}
    assert "masklab.cli" in modules
    assert not {m for m in modules if m == "torch" or m.startswith("torch.")}
    assert "sklearn" not in modules and "scipy" not in modules


def test_help_lists_every_command_and_each_has_examples():
    top = cli("--help")
    assert top.exit_code == 0
    for command in COMMANDS:
        assert command in top.stdout
        sub = cli(command, "--help")
        assert sub.exit_code == 0 and "Examples" in sub.stdout, command


def test_module_entry_point_and_version():
    import importlib.metadata

    import masklab

    out = subprocess.run([sys.executable, "-m", "masklab", "--version"], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout == f"masklab {masklab.__version__}\n"
    assert masklab.__version__ == importlib.metadata.version("masklab")  # the installed package's, not a copy


@pytest.mark.parametrize(
    "args, code",
    [
        (["train"], 2),
        (["runs", "--format", "xml"], 2),
        (["show", "nope"], 1),
        (["compare", "nope"], 1),
        (["frobnicate"], 2),
        (["train", "x.yaml", "--bogus"], 2),
        (["compare"], 2),
    ],
)
def test_usage_errors_and_missing_runs(workdir, args, code):
    result = cli(*args)
    assert result.exit_code == code
    assert result.stdout == "" and "Traceback" not in result.stderr
    assert result.stderr.startswith("Error: ") and len(result.stderr.splitlines()) == 1, result.stderr


def test_usage_error_names_the_problem_and_the_help_to_read(workdir):
    result = cli("compare")
    assert result.stderr == "Error: Missing argument 'RUN_OR_GROUP...'; see 'masklab compare --help'\n"


def test_help_prose_is_reflowed_and_examples_kept():
    from masklab.cli.common import reflow_help

    doc = """Summary line.

    A paragraph wrapped
    over two lines.

    Examples:

      masklab train a.yaml
      masklab train b.yaml
    """
    assert reflow_help(doc) == (
        "Summary line.\n\nA paragraph wrapped over two lines.\n\nExamples:\n\n"
        "  masklab train a.yaml\n  masklab train b.yaml"
    )


def test_compare_fail_if_must_parse(workdir):
    result = cli("compare", "a", "--fail-if", "test_acc is low")
    assert result.exit_code == 2 and "expected METRIC" in result.stderr


def test_table_in_a_pipe_is_tab_separated_text():
    import io

    from masklab.cli.tables import columns, render

    out = io.StringIO()  # not a TTY
    rows = [{"run": "a-s0", "seed": 0, "test_acc": 0.91234}, {"run": "bb-s1", "seed": 1, "test_acc": None}]
    render(rows, columns("run", "seed", "test_acc"), "table", title="runs", out=out)
    assert out.getvalue() == (  # no title: the header row comes first, for cut -f and awk -F'\t'
        "run\tseed\ttest_acc\na-s0\t0\t0.9123\nbb-s1\t1\t-\n"
    )
    out = io.StringIO()
    render(rows, columns("run", "seed", "test_acc"), "table", out=out, header=False)
    assert out.getvalue() == "a-s0\t0\t0.9123\nbb-s1\t1\t-\n"
