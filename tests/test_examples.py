"""Every example a user reads runs as written: the README's commands (the tour first,
in order), then every example of every command's --help, as rendered on an 80-column
terminal, against the runs the tour left. Shipped specs' header commands parse as bash
and as masklab commands; README's excerpts of shipped specs are the files."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from masklab.cli import app

from conftest import cli

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
COMMANDS = ["train", "runs", "show", "eval", "compare", "mask", "noise", "export", "tag", "prune", "rm", "search"]


def logical_lines(lines: list[str]) -> list[str]:
    """Join backslash continuations; drop blanks."""
    out, pending = [], ""
    for line in lines:
        stripped = line.rstrip()
        if stripped.endswith("\\"):
            pending += stripped[:-1].strip() + " "
            continue
        text = (pending + stripped.strip()).strip()
        pending = ""
        if text:
            out.append(text)
    return out


def readme_commands() -> list[str]:
    """masklab commands of the README's bash blocks, in order (set-up lines are CI's)."""
    blocks = re.findall(r"```bash\n(.*?)```", README, flags=re.S)
    commands = []
    for block in blocks:
        for line in logical_lines(block.splitlines()):
            if line.startswith("masklab "):
                commands.append(line)
    return commands


def studies() -> set[str]:
    """Shipped specs with variants, and searches on a full dataset: sized for real data,
    hours on a CPU."""
    names = set()
    for path in sorted((ROOT / "experiments").glob("*.yaml")):
        body = yaml.safe_load(path.read_text())
        if body.get("variants") or (body.get("search") and body["data"]["dataset"] != "mnist-mini"):
            names |= {body["name"], f"experiments/{path.name}"}
    return names


def runs_a_study(command: str) -> bool:
    return bool(set(shlex.split(command, comments=True)) & studies())


def check_parses(command: str) -> list[str]:
    """What cannot be run here still parses: as bash words, then as the masklab command's options."""
    import typer.main

    words = bash_words(command)
    group = typer.main.get_command(app)
    sub = group.get_command(None, words[0])
    sub.make_context(words[0], words[1:])
    return words


def help_examples(command: str) -> list[str]:
    """The examples under `Examples:` in `masklab COMMAND --help` as an 80-column terminal shows it."""
    result = cli_env({"COLUMNS": "80", "TERMINAL_WIDTH": "80"}, command, "--help")
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip() == "Examples:")
    block = []
    for line in lines[start + 1 :]:
        if line.lstrip().startswith(("╭", "Usage")) or (line.strip() and not line.startswith("   ")):
            break  # the option panels, or prose after the examples (mask/noise list their ops)
        block.append(line.strip())
    examples = logical_lines(block)
    assert examples and all(e.startswith("masklab ") for e in examples), examples  # a wrapped line would not
    return examples


def cli_env(env: dict, *args: str):
    from typer.testing import CliRunner

    return CliRunner().invoke(app, list(args), env=env)


@contextlib.contextmanager
def inside(folder: Path):
    before = os.getcwd()
    os.chdir(folder)
    try:
        yield
    finally:
        os.chdir(before)


def run_example(command: str, folder: Path) -> tuple[int, str, str]:
    """A plain `masklab ...` runs in process, split as bash splits it; a line with shell
    syntax outside quotes (a pipe) runs in bash with this environment's masklab on PATH."""
    unquoted = "".join(re.split(r"'[^']*'", command))
    if re.search(r"[|;&<>$`]", unquoted):
        env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
        out = subprocess.run(["bash", "-c", command], cwd=folder, env=env, capture_output=True, text=True, timeout=300)
        return out.returncode, out.stdout, out.stderr
    args = shlex.split(command, comments=True)
    with inside(folder):
        result = cli(*args[1:])
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture(scope="module")
def tour(tmp_path_factory) -> Path:
    """A fresh working folder after the README's commands (the tour, trackers, housekeeping)."""
    folder = tmp_path_factory.mktemp("tour")
    shutil.copytree(ROOT / "experiments", folder / "experiments")
    saved = {k: os.environ.pop(k, None) for k in ("MASKLAB_RUNS", "MASKLAB_DATA", "MASKLAB_MIRROR")}
    os.environ["MASKLAB_CACHE"] = str(folder / "cache")
    try:
        for command in readme_commands():
            if runs_a_study(command):  # hours of training: parsed and validated, not run
                check_parses(command)
                continue
            code, out, err = run_example(command, folder)
            assert code == 0, f"README: {command}\n{err}"
        yield folder
    finally:
        os.environ.pop("MASKLAB_CACHE", None)
        os.environ.update({k: v for k, v in saved.items() if v is not None})


@pytest.mark.slow
def test_readme_tour_ran_and_left_what_it_says(tour):
    runs = sorted(p.name for p in (tour / "runs").iterdir() if p.is_dir() and not p.name.startswith("."))
    names = {re.sub(r"-[0-9a-f]{8}-s\d+$", "", r) for r in runs}
    grid = {f"patch-grid-rate={r}-mode={m}" for r in ("0.25", "0.5") for m in ("static", "dynamic")}
    searched = {"search-quickstart-search", "search-quickstart", "search-quickstart-best"}  # trials, --confirm
    # `masklab rm` took quickstart-noisy
    sequential = {"rate-seq-rate=0.25", "rate-seq-rate=0.9"}  # settled at its first look: 3 seeds each
    assert names == {"quickstart", "quickstart-static", "text-quickstart"} | grid | searched | sequential
    assert len([r for r in runs if r.startswith("patch-grid-")]) == 12  # the study: 2 x 2 grid x 3 seeds
    assert len([r for r in runs if r.startswith("rate-seq-")]) == 6
    looks = json.loads((tour / "runs" / "rate-seq.sequential.json").read_text())["looks"]
    assert [list(look["decisions"].values()) for look in looks] == [["worse"]]
    assert (tour / "runs" / "search-quickstart.search.db").is_file()  # the search's Optuna study
    assert (tour / "patch.png").is_file() and (tour / "mlflow.db").is_file() and (tour / "rate.png").is_file()
    # as README's tour names them
    written = {"runs", "patch.npz", "noisy.npz", "mlflow.db", "mlflow-artifacts", "tensorboard"}
    assert written <= {p.name for p in tour.iterdir()} and not (tour / "mlruns").exists()  # artifacts beside the db
    tracked = [r for r in runs if re.fullmatch(r"quickstart-[0-9a-f]{8}-s[012]", r)]
    assert sorted(p.name for p in (tour / "tensorboard").iterdir()) == tracked  # the runs `--track` logged
    assert len(tracked) == 3 and (tour / "runs" / tracked[0] / "ops.png").is_file()


@pytest.mark.slow
def test_every_help_example_runs_as_written(tour, tmp_path):
    """In the order of COMMANDS, against a copy of the tour's folder: train first, so the
    runs its examples add stand beside the tour's when the others run (a spec trained
    again under its own name would make `quickstart` name two groups, which they refuse)."""
    shutil.copytree(tour, tmp_path / "w")
    os.environ["MASKLAB_CACHE"] = str(tmp_path / "cache")
    try:
        for command in COMMANDS:
            for example in help_examples(command):
                code, out, err = run_example(example, tmp_path / "w")
                assert code == 0, f"masklab {command} --help: {example}\n{err}"
                assert out.strip(), f"{example}: nothing on stdout"
    finally:
        os.environ.pop("MASKLAB_CACHE", None)


def test_the_tour_runs_in_a_folder_of_its_own():
    """What the tour writes (runs/, .npz, .png, mlflow.db, mlflow-artifacts/, tensorboard/) lands in a
    scratch folder holding a copy of experiments/, as the `tour` fixture runs it, never in
    the source tree."""
    block = README[README.index("## A five-minute tour") :]
    first = re.search(r"```bash\n(.*?)\n", block).group(1)
    assert first == "mkdir -p ~/masklab-tour && cp -r experiments ~/masklab-tour/ && cd ~/masklab-tour"
    for name in ("runs/", "patch.npz", "mlflow.db", "mlflow-artifacts/", "tensorboard/"):
        assert f"`{name}`" in block[: block.index("```bash")], name


def test_the_examples_cover_every_command():
    listed = set(re.findall(r"^│ (\w+) ", cli_env({"COLUMNS": "100"}, "--help").stdout, flags=re.M))
    assert listed == set(COMMANDS)


def test_help_reads_without_python_types():
    for command in COMMANDS:
        text = cli_env({"COLUMNS": "100"}, command, "--help").stdout
        usage = next(line for line in text.splitlines() if "Usage:" in line)
        assert not any(bad in usage for bad in ("{", "[[", "]]", "......")), usage
        assert re.search(r"Usage: masklab \w+ \[OPTIONS\]", usage)
        panels = text[text.index("╭") :]
        for bad in ("<bool>", "<str>", "<int>", "<float>", "<path>", "list[str]", "<table"):
            assert bad not in panels, (command, bad)


def test_bare_masklab_shows_help_and_exits_0():
    result = cli()
    assert result.exit_code == 0 and "Usage: masklab" in result.stdout and "Commands" in result.stdout


# --- shipped specs and README excerpts ----------------------------------------------

SPECS = sorted((ROOT / "experiments").glob("*.yaml"))


def header_commands(path: Path) -> list[str]:
    header = []
    for line in path.read_text().splitlines():
        if not line.startswith("#"):
            break
        header.append(line[1:].strip())
    return [line for line in header if line.startswith("masklab ")]


def bash_words(command: str) -> list[str]:
    """The arguments bash passes to masklab for this line."""
    script = f'masklab() {{ printf "%s\\0" "$@"; }}\n{command}\n'
    out = subprocess.run(["bash", "-c", script], capture_output=True, text=True, check=True)
    return out.stdout.split("\0")[:-1]


@pytest.mark.parametrize("path", SPECS, ids=lambda p: p.name)
def test_spec_header_commands_run_when_pasted_into_bash(path: Path):
    from masklab import spec as spec_mod
    from masklab.evaluation.robustness import cell_name, expand_grid
    from masklab.ops.suites import suite_ops

    commands = header_commands(path)
    # a search spec starts with its search, and says how to train its own configuration
    verb = "search" if yaml.safe_load(path.read_text()).get("search") else "train"
    first = f"masklab {verb} experiments/{path.name}"
    assert commands[0] == first or (verb == "search" and commands[0].startswith(first + " "))
    assert f"masklab train experiments/{path.name}" in commands
    prose = [line for line in path.read_text().splitlines() if line.startswith("#") and "masklab " in line]
    assert all(line.startswith("# masklab ") for line in prose), f"{path.name}: a command inside prose: {prose}"
    specs = spec_mod.load_study(path, [], None)
    cells = {f"acc@{cell_name(c)}" for s in specs for op in s.eval.ops for c in expand_grid(op)}
    for suite in {s.eval.suite for s in specs if s.eval.suite}:  # its cells, and their mean acc@<suite>
        cells |= {f"acc@{suite}"} | {
            f"acc@{cell_name(c)}" for op in suite_ops(suite, (1, 28, 28)) for c in expand_grid(op)
        }
    for command in commands:
        words = check_parses(command)  # bash raises on an unquoted parenthesis; click on a bad option
        metrics = [words[i + 1] for i, w in enumerate(words) if w in ("--metric", "-m")]
        for m in metrics:
            assert "@" not in m or m in cells, (
                f"{path.name}: --metric {m} is not a cell of its eval grid {sorted(cells)}"
            )


def test_the_header_check_catches_an_unquoted_parenthesis():
    with pytest.raises(subprocess.CalledProcessError):
        bash_words("masklab compare x --metric acc@patch(rate=0.5)")


def test_readme_spec_excerpts_are_the_shipped_files():
    excerpts = [b for b in re.findall(r"```yaml\n(.*?)```", README, flags=re.S) if b.startswith("# masklab train ")]
    assert len(excerpts) >= 2
    for block in excerpts:
        name = block.splitlines()[0].split()[-1]
        assert block == (ROOT / name).read_text(), f"README's excerpt of {name} differs from the file"
        yaml.safe_load(block)
