"""Studies: the planner (pure), --dry-run, executors that agree with the sequential path,
kills and resumes, two studies at once, and compare along an axis."""

from __future__ import annotations

import json
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from masklab import spec as spec_mod
from masklab.errors import SpecError, UsageError
from masklab.study import plan

from conftest import cli, tiny_spec

GRID = {"train_ops[0].rate": [0.25, 0.5], "train_ops[0].mode": ["static", "dynamic"]}


def grid_spec(**changes) -> dict:
    body = tiny_spec(**{"train_ops": [{"op": "patch", "rate": 0.25, "size": 4}], "seeds": [0, 1], **changes})
    body["grid"] = GRID
    return body


# --- the planner --------------------------------------------------------------------


def test_a_grid_is_the_product_of_its_axes_and_seeds_with_readable_labels():
    study = plan.plan_study(grid_spec(), "tiny")
    assert [r.label for r in study.runs[::2]] == [
        "rate=0.25-mode=static",
        "rate=0.25-mode=dynamic",
        "rate=0.5-mode=static",
        "rate=0.5-mode=dynamic",
    ]
    assert [r.seed for r in study.runs] == [0, 1] * 4
    first = study.runs[0]
    assert first.id == f"tiny-rate=0.25-mode=static-{first.spec.group_hash()}-s0"
    assert first.spec.train_ops[0]["rate"] == 0.25 and first.spec.train_ops[0]["mode"] == "static"
    assert first.values == {"train_ops[0].rate": 0.25, "train_ops[0].mode": "static"}
    assert len({r.id for r in study.runs}) == 8


def test_a_spec_without_a_grid_keeps_its_ids():
    body = tiny_spec(seeds=[0, 1])
    ids = [r.id for r in plan.plan_study(body, "tiny").runs]
    (spec,) = spec_mod.expand_variants(body, "tiny")
    assert ids == [f"tiny-{spec.group_hash()}-s0", f"tiny-{spec.group_hash()}-s1"]
    variants = tiny_spec(variants={"a": {"train.lr": 0.1}, "b": {"train.lr": 0.2}})
    assert [r.id for r in plan.plan_study(variants, "tiny").runs] == [
        f"{s.name}-{s.group_hash()}-s0" for s in spec_mod.expand_variants(variants, "tiny")
    ]


def test_command_line_axes_replace_or_add_and_single_values_stay_out_of_labels():
    study = plan.plan_study(grid_spec(), "tiny", grid=["train_ops[0].rate=0.1,0.2,0.3", "model.hidden=[16],[32]"])
    assert len(study.runs) == 3 * 2 * 2 * 2
    assert study.runs[0].label == "rate=0.1-mode=static-hidden=16"
    one = plan.plan_study(tiny_spec(), "tiny", grid=["train.lr=0.05"])
    assert one.runs[0].spec.name == "tiny" and one.runs[0].spec.train.lr == 0.05


def test_set_name_names_the_study_its_runs_and_its_variants():
    assert plan.study_name({"name": "tiny"}, "spec.yaml", ["train.lr=0.1", "name=rates"]) == "rates"
    assert plan.study_name({}, "dir/my spec.yaml", []) == "my-spec"
    study = plan.plan_study(grid_spec(), plan.study_name(grid_spec(), "x.yaml", ["name=rates"]), sets=["name=rates"])
    assert study.name == "rates" and {r.spec.study for r in study.runs} == {"rates"}
    assert study.runs[0].id.startswith("rates-rate=0.25-mode=static-")
    body = tiny_spec(variants={"a": {}, "b": {"train.lr": 0.1}})
    named = plan.plan_study(body, plan.study_name(body, "x.yaml", ["name=lrs"]), sets=["name=lrs"])
    assert [r.spec.name for r in named.runs] == ["lrs-a", "lrs-b"]


def test_labels_disambiguate_keys_and_shorten_long_values():
    body = tiny_spec(train_ops=[{"op": "patch", "rate": 0.25, "size": 4}, {"op": "pixel", "rate": 0.1}])
    study = plan.plan_study(body, "tiny", grid=["train_ops[0].rate=0.1,0.2", "train_ops[1].rate=0.3,0.4"])
    assert study.runs[0].label == "0.rate=0.1-1.rate=0.3"
    ops = plan.plan_study(body, "tiny", grid=["train_ops[1]={op: gaussian, sigma: 0.1},{op: gaussian, sigma: 0.2}"])
    assert [r.label for r in ops.runs] == ["train_ops.1=op_gaussian_sigma_0.1", "train_ops.1=op_gaussian_sigma_0.2"]
    long = plan.plan_study(
        body, "tiny", grid=["train_ops[1]={op: gaussian, sigma: 0.1, p: 0.5},{op: uniform, width: 0.2}"]
    )
    assert [r.label for r in long.runs] == ["train_ops.1=v1", "train_ops.1=v2"]


@pytest.mark.parametrize(
    ("text", "seeds"), [("0-4", [0, 1, 2, 3, 4]), ("0,2,5-6", [0, 2, 5, 6]), ("7", [7]), (" 1 - 2 ", [1, 2])]
)
def test_seed_ranges(text, seeds):
    assert plan.parse_seeds(text) == seeds


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"sets": ["train_ops[0].rate=0.3"]}, UsageError, "--set train_ops[0].rate: train_ops[0].rate is a grid axis"),
        ({"grid": ["train_ops[0].rate"]}, UsageError, "--grid train_ops[0].rate: expected key.path=v1,v2"),
        ({"grid": ["train.lr=0.1,0.1"]}, SpecError, "--grid train.lr: the value 0.1 appears twice"),
        ({"grid": ["train..lr=0.1"]}, UsageError, "--grid train..lr: bad key path"),
        (
            {"grid": ["train_ops[0].rate=0.5,1.5"]},
            SpecError,
            "grid rate=1.5-mode=static: train_ops[0].rate: must be in [0, 1], got 1.5",
        ),
    ],
)
def test_bad_grids_are_refused_with_the_key_named(kwargs, error, message):
    with pytest.raises(error) as err:
        plan.plan_study(grid_spec(), "tiny", **kwargs)
    assert message in str(err.value)


@pytest.mark.parametrize("text", ["1-0", "a", "0,0", "-1"])
def test_bad_seeds_are_refused(text):
    with pytest.raises(UsageError, match="--seeds"):
        plan.parse_seeds(text)


def test_the_planner_imports_no_torch():
    code = "import sys; from masklab.study import plan, states; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


# --- trained studies ----------------------------------------------------------------


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> dict:
    """The 2 x 2 grid x 2 seeds, trained sequentially in this process with one thread."""
    import torch

    folder = tmp_path_factory.mktemp("study")
    spec = folder / "grid.yaml"
    spec.write_text(yaml.safe_dump(grid_spec(), sort_keys=False))
    threads = torch.get_num_threads()
    try:
        out = cli("train", spec, "-q", "--threads", 1, "-f", "json", "--runs-dir", folder / "runs")
    finally:
        torch.set_num_threads(threads)
    assert out.exit_code == 0, out.stderr
    return {"spec": spec, "runs": folder / "runs", "rows": json.loads(out.stdout)["rows"]}


def run_facts(runs: Path) -> dict[str, tuple]:
    """id -> (test_acc, test_loss, per-epoch train losses): what must match exactly."""
    facts = {}
    for folder in sorted(p for p in runs.iterdir() if not p.name.startswith(".")):
        summary = json.loads((folder / "summary.json").read_text())
        losses = [json.loads(line)["train_loss"] for line in (folder / "metrics.jsonl").read_text().splitlines()]
        facts[folder.name] = (summary["test_acc"], summary["test_loss"], losses)
    return facts


def test_dry_run_lists_every_run_with_its_state_and_creates_nothing(trained, tmp_path):
    empty = tmp_path / "none"
    out = cli("train", trained["spec"], "--dry-run", "-f", "json", "--runs-dir", empty)
    assert out.exit_code == 0, out.stderr
    body = json.loads(out.stdout)
    assert body["runs"] == 8 and body["counts"] == {"new": 8} and not empty.exists()
    assert [r["id"] for r in body["rows"]] == [r["run"] for r in trained["rows"]]
    assert body["rows"][0] | {"id": None} == {
        "id": None,
        "label": "rate=0.25-mode=static",
        "seed": 0,
        "state": "new",
        "epochs": "0/2",
        "action": "train",
        "detail": None,
        "grid.train_ops[0].rate": 0.25,
        "grid.train_ops[0].mode": "static",
        "estimate_s": None,  # nothing measured in an empty runs folder
    }
    done = json.loads(cli("train", trained["spec"], "--dry-run", "-f", "json", "--runs-dir", trained["runs"]).stdout)
    assert done["counts"] == {"done": 8} and {r["action"] for r in done["rows"]} == {"skip"}
    csv = cli("train", trained["spec"], "--dry-run", "-f", "csv", "--seeds", "0-2", "--runs-dir", trained["runs"])
    lines = csv.stdout.splitlines()
    assert (
        lines[0] == "id,label,seed,state,estimate_s,epochs,action,detail,grid.train_ops[0].rate,grid.train_ops[0].mode"
    )
    assert len(lines) == 1 + 12 and sum(",new," in line and ",0/2,train," in line for line in lines) == 4


def test_dry_run_estimates_the_time_from_runs_this_machine_finished(trained, tmp_path):
    """Seconds per epoch per training sample and seconds beyond the epochs, medians over
    the finished runs of the same model, data, batch size, objective and precision, times
    the planned run's samples and epochs; none where nothing like it has run here."""
    out = cli("train", trained["spec"], "--dry-run", "-f", "json", "--seeds", "0-2", "--runs-dir", trained["runs"])
    assert out.exit_code == 0, out.stderr
    per_sample, outside = [], []
    for folder in sorted(p for p in trained["runs"].iterdir() if not p.name.startswith(".")):
        info = json.loads((folder / "run.json").read_text())
        seconds = [json.loads(line)["seconds"] for line in (folder / "metrics.jsonl").read_text().splitlines()]
        per_sample.append(statistics.median(seconds) / (info["data"]["n_train"] - info["n_val"]))
        outside.append(info["duration_s"] - sum(seconds))
    each = statistics.median(per_sample) * 300 * (1 - 0.2) * 2 + statistics.median(outside)  # 240 samples, 2 epochs
    body = json.loads(out.stdout)
    assert [r["estimate_s"] for r in body["rows"]] == [None, None, pytest.approx(each, abs=0.05)] * 4  # seed 2 is new
    assert body["estimate"]["seconds"] == pytest.approx(4 * each, abs=0.2) and body["estimate"]["runs"] == 4
    said = out.stderr.strip()
    assert (
        said.startswith("estimate: about ")
        and "for 4 run(s), one after another (8 finished run(s) here on cpu: " in said
    )
    assert "s an epoch of 240 samples" in said
    other = cli("train", trained["spec"], "--dry-run", "--set", "train.batch_size=64", "--runs-dir", trained["runs"])
    assert other.stderr.strip() == (
        "no estimate for 8 run(s): no finished run here trained this model on mnist-mini with batch size 64, "
        "objective classify and precision auto; train one epoch of one (e.g. --seeds 0 --set train.epochs=1) and ask again"
    )


def test_dry_run_says_a_fine_tune_needs_its_source_first(workdir, write_spec):
    spec = write_spec(tiny_spec(name="ft", seeds=[0, 1], train={"init_from": "src", "epochs": 1}), "ft.yaml")
    rows = json.loads(cli("train", spec, "--dry-run", "-f", "json").stdout)["rows"]
    assert [(r["state"], r["action"]) for r in rows] == [("new", "needs source")] * 2
    assert all("needs its init_from source: src: no such run" in r["detail"] for r in rows)
    source = write_spec(tiny_spec(name="src", seeds=[0, 2], train={"epochs": 1}), "src.yaml")
    assert cli("train", source, "-q").exit_code == 0
    rows = json.loads(cli("train", spec, "--dry-run", "-f", "json").stdout)["rows"]
    assert [r["action"] for r in rows] == ["train", "needs source"]  # seed 0 has its source now, seed 1 not
    assert rows[0]["detail"] is None and "has no run with seed 1" in rows[1]["detail"]


def test_runs_lists_the_labels(trained):
    rows = json.loads(cli("runs", "-f", "json", "--runs-dir", trained["runs"]).stdout)["rows"]
    assert sorted({r["label"] for r in rows}) == sorted(
        ["rate=0.25-mode=static", "rate=0.25-mode=dynamic", "rate=0.5-mode=static", "rate=0.5-mode=dynamic"]
    )


def seed_0(trained: dict) -> tuple[list[str], dict[str, tuple]]:
    """The ids and facts of the sequentially trained runs of seed 0 (one per grid cell)."""
    ids = [r["run"] for r in trained["rows"] if r["run"].endswith("-s0")]
    facts = run_facts(trained["runs"])
    return ids, {rid: facts[rid] for rid in ids}


def test_jobs_2_gives_the_sequential_ids_and_metrics(trained, tmp_path, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # the same thread count on both paths: the same floats
    args = ("-q", "--seeds", "0", "--jobs", "2", "-f", "json", "--runs-dir", tmp_path / "runs")
    out = cli("train", trained["spec"], *args)  # the four cells of seed 0: two workers, two runs each
    assert out.exit_code == 0, out.stderr
    ids, facts = seed_0(trained)
    assert [r["run"] for r in json.loads(out.stdout)["rows"]] == ids and len(ids) == 4
    assert run_facts(tmp_path / "runs") == facts
    assert out.stderr.count(": done  test_acc") == 4


def test_a_rerun_trains_nothing(trained):
    out = cli("train", trained["spec"], "-q", "--jobs", "2", "-f", "json", "--runs-dir", trained["runs"])
    assert out.exit_code == 0
    assert out.stderr.count("already done, reusing it") == 8
    assert {r["status"] for r in json.loads(out.stdout)["rows"]} == {"reused"}


# --- seed groups (train.seed_batch) through the driver ---------------------------------


def test_work_items_batch_each_specs_seeds_by_action_in_plan_order():
    from masklab.study.executors import work_items
    from masklab.study.states import RunState

    body = grid_spec(seeds=[0, 1, 2, 3, 4])
    body["train"]["seed_batch"] = 2
    study = plan.plan_study(body, "tiny", grid=["train_ops[0].mode=static"])
    first, second = study.runs[:5], study.runs[5:]
    states = [RunState(p, "new", "train") for p in first] + [
        RunState(p, "interrupted", "resume" if p.seed in (1, 3) else "train") for p in second
    ]
    items = work_items(states)
    assert [(i.spec.name, i.seeds, i.action) for i in items] == [
        ("tiny-rate=0.25", (0, 1), "train"),
        ("tiny-rate=0.25", (2, 3), "train"),
        ("tiny-rate=0.25", (4,), "train"),
        ("tiny-rate=0.5", (0, 2), "train"),
        ("tiny-rate=0.5", (4,), "train"),
        ("tiny-rate=0.5", (1, 3), "resume"),
    ]
    assert items[0].id == f"tiny-rate=0.25-{first[0].spec.group_hash()}-s0,1" and items[0].ids == [
        first[0].id,
        first[1].id,
    ]
    assert [i.seeds for i in work_items(states, batch_seeds=False)][:2] == [(0,), (1,)]  # Ray: one task per run


@pytest.fixture(scope="module")
def batched_spec(tmp_path_factory) -> Path:
    body = tiny_spec(model={"arch": "mlp", "hidden": [16]}, seeds=[0, 1, 2], train={"seed_batch": 2})
    path = tmp_path_factory.mktemp("batched") / "batched.yaml"
    path.write_text(yaml.safe_dump(body, sort_keys=False))
    return path


def test_seed_groups_train_batched_in_process_and_with_jobs_alike(batched_spec, tmp_path, monkeypatch):
    import torch

    from masklab import threads

    share = max(1, threads.usable_cores() // 2)  # what each of two workers gets
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    dry = cli("train", batched_spec, "--dry-run", "-f", "json", "--runs-dir", tmp_path / "a")
    assert [r["batch"] for r in json.loads(dry.stdout)["rows"]] == ["0,1", "0,1", None]
    before = torch.get_num_threads()
    try:
        one = cli("train", batched_spec, "--threads", share, "-f", "json", "--runs-dir", tmp_path / "a")
    finally:
        torch.set_num_threads(before)
    assert one.exit_code == 0, one.stderr
    assert "tiny-" in one.stderr and "-s0,1: training 2 epochs x 7 steps (2 seeds batched)" in one.stderr
    two = cli("train", batched_spec, "-q", "--jobs", "2", "-f", "json", "--runs-dir", tmp_path / "b")
    assert two.exit_code == 0, two.stderr
    assert [r["run"] for r in json.loads(two.stdout)["rows"]] == [r["run"] for r in json.loads(one.stdout)["rows"]]
    assert run_facts(tmp_path / "b") == run_facts(tmp_path / "a")
    info = {rid: i for rid, i in infos(tmp_path / "b").items()}
    assert [i.get("seed_batch", {}).get("seeds") for _, i in sorted(info.items())] == [[0, 1], [0, 1], None]
    assert {i["threads"] for i in info.values()} == {share}  # N workers x threads <= usable cores


def test_a_seed_that_fails_its_batch_fails_alone_and_the_others_go_on(batched_spec, workdir, monkeypatch):
    from masklab.errors import SeedFailed
    from masklab.study import runner

    original, calls = runner.train_and_test, []

    def seed_1_diverges(spec, seeds, *args, **kwargs):
        calls.append(list(seeds))
        if 1 in seeds:
            raise SeedFailed("loss became non-finite at epoch 1 step 3", 1)
        return original(spec, seeds, *args, **kwargs)

    monkeypatch.setattr(runner, "train_and_test", seed_1_diverges)
    out = cli("train", batched_spec, "-f", "json")
    assert out.exit_code == 1
    assert calls == [[0, 1], [2], [0]]  # seed 2 alone, then the driver resumes seed 0 (stopped by its group)
    statuses = {i["seed"]: i["status"] for i in infos(workdir / "runs").values()}
    assert statuses == {0: "done", 1: "failed", 2: "done"}
    assert "1 of 3 runs did not finish" in out.stderr and "seed 1: loss became non-finite" in out.stderr


def test_the_study_view_in_a_pipe_and_with_q(capsys, monkeypatch):
    from masklab.cli import study_view
    from masklab.study.executors import Result
    from masklab.study.states import RunState

    monkeypatch.setattr(study_view, "HEARTBEAT_S", 0.0)  # a line for every step seen within an epoch
    runs = plan.plan_study(tiny_spec(seeds=[0, 1, 2]), "tiny").runs
    group, ids = "tiny-h-s0,1", [r.id for r in runs]
    for quiet in (False, True):
        view = study_view.StudyView("tiny", quiet=quiet, live=False)
        view.begin([RunState(p, "new", "train") for p in runs])
        view.note("starting 2 worker process(es), 1 thread(s) each", quiet_too=False)
        view.started(group, 2, 7, 0, runs=2)
        view.started(ids[2], 2, 7, 1)
        view.step(group, 0, 3)
        view.epoch(group, {"epoch": 1, "train_loss": 1.25, "val_acc": 0.8125, "seconds": 0.5})
        view.ended(group)
        view.finished(Result(ids[0], "done", {"test_acc": 0.9}, seconds=1.5, item=group))
        view.finished(Result(ids[1], "failed", error="loss became non-finite", exit_code=1, item=group))
        view.ended(ids[2])
        view.finished(Result(ids[2], "done", {"test_acc": 0.875}, seconds=0.75, item=ids[2]))
        view.end()
        assert view.finished_count == 3 and view.failed == 1 and not view.running
    lines = capsys.readouterr().err.splitlines()
    finished = [
        f"[1/3] {ids[0]}: done  test_acc 0.9000  1.5s",
        f"[2/3] {ids[1]}: failed: loss became non-finite",
        f"[3/3] {ids[2]}: done  test_acc 0.8750  0.8s",
    ]
    assert lines == [
        "starting 2 worker process(es), 1 thread(s) each",
        f"{group}: training 2 epochs x 7 steps (2 seeds batched)",
        f"{ids[2]}: training 2 epochs x 7 steps (resuming after epoch 1)",
        f"{group}: epoch 1/2 step 4/7",
        f"{group}: epoch 1/2  loss 1.2500  val_acc 0.8125  0.5s",
        *finished,
        *finished,  # -q: only the line per finished run
    ]


# --- compare along an axis ----------------------------------------------------------


def test_compare_by_and_split_is_a_pivot_of_mean_interval_and_n(trained, tmp_path):
    from scipy import stats as scipy_stats

    args = [
        "compare",
        "tiny",
        "--by",
        "train_ops[0].rate",
        "--split",
        "train_ops[0].mode",
        "--runs-dir",
        trained["runs"],
    ]
    body = json.loads(cli(*args, "-f", "json").stdout)
    assert body["rows"] == [0.25, 0.5] and body["columns"] == ["static", "dynamic"]
    acc = {r["run"]: r["test_acc"] for r in trained["rows"]}
    cell = body["cells"][0]
    values = [v for k, v in acc.items() if "rate=0.25-mode=static" in k]
    mean = sum(values) / 2
    half = scipy_stats.t.ppf(0.975, 1) * abs(values[0] - values[1]) / 2**0.5 / 2**0.5
    assert cell["n"] == 2 and cell["mean"] == pytest.approx(mean)
    assert cell["ci_low"] == pytest.approx(mean - half) and cell["ci_high"] == pytest.approx(mean + half)
    table = cli(*args).stdout.splitlines()  # in a pipe: no title line
    assert table[0].split() == ["train_ops[0].rate", "mode=static", "mode=dynamic"]
    assert table[1].startswith("0.25") and f"{mean:.4f} ± {half:.4f} (95% CI, n=2)" in table[1]
    rows = cli(*args, "-f", "csv").stdout.splitlines()
    assert rows[0] == "train_ops[0].rate,train_ops[0].mode,n,mean,ci_low,ci_high,std,seeds" and len(rows) == 5
    png = tmp_path / "rate.png"
    assert cli(*args, "--plot", png).exit_code == 0 and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_compare_by_refuses_runs_that_differ_in_another_key(trained):
    out = cli("compare", "tiny", "--by", "train_ops[0].rate", "--runs-dir", trained["runs"])
    assert out.exit_code == 2
    assert "differ in train_ops[0].mode" in out.stderr and "--where 'train_ops[0].mode=...'" in out.stderr
    narrowed = cli(
        "compare",
        "tiny",
        "--by",
        "train_ops[0].rate",
        "--where",
        "train_ops[0].mode=static",
        "-f",
        "json",
        "--runs-dir",
        trained["runs"],
    )
    assert narrowed.exit_code == 0 and [c["n"] for c in json.loads(narrowed.stdout)["cells"]] == [2, 2]
    bad = cli("compare", "tiny", "--by", "train_ops[0].rat", "--runs-dir", trained["runs"])
    assert bad.exit_code == 2 and "did you mean 'train_ops[0].rate'" in bad.stderr


def fake_run(root: Path, name: str, seed: int, spec: dict, test_acc: float) -> Path:
    """A finished run folder with just what compare reads (200 test examples)."""
    folder = root / f"{name}-{seed}"
    folder.mkdir(parents=True)
    (folder / "spec.yaml").write_text(yaml.safe_dump(spec))
    info = {"id": folder.name, "name": name, "seed": seed, "status": "done", "data": {"n_test": 200}}
    (folder / "run.json").write_text(json.dumps(info))
    (folder / "summary.json").write_text(json.dumps({"test_acc": test_acc}))
    return folder


def test_a_pivot_cell_follows_compares_rules_and_notes_a_confounded_key(tmp_path):
    from masklab.analysis import pivot, stats
    from masklab.store.runs import RunStore

    accs = {(0.1, 0): 0.90, (0.1, 1): 0.92, (0.1, 2): 0.91, (0.5, 0): 0.85, (0.5, 1): 0.85, (0.9, 0): 0.70}
    for (rate, seed), acc in accs.items():
        spec = {"train_ops": [{"op": "patch", "rate": rate}], "train": {"lr": 0.01 if rate < 0.9 else 0.02}}
        fake_run(tmp_path, f"s-{rate}", seed, spec, acc)
    p = pivot.pivot(RunStore(tmp_path).all(), "test_acc", "train_ops[0].rate")
    rows = {r["train_ops[0].rate"]: r for r in p.cell_rows()}
    assert p.step == 1 / 200 and [rows[r]["n"] for r in (0.1, 0.5, 0.9)] == [3, 2, 1]
    assert (rows[0.1]["ci_low"], rows[0.1]["ci_high"]) == pytest.approx(stats.mean_interval([0.90, 0.92, 0.91]))
    assert rows[0.1]["ci_high"] - rows[0.1]["mean"] == pytest.approx(4.302653 * 0.01 / 3**0.5, rel=1e-6)
    assert rows[0.5]["ci_low"] is None and rows[0.9]["ci_low"] is None  # seeds that agree; one seed
    assert p.notes == ["train.lr changes along the axes too (0.01, 0.02): the pivot cannot separate its effect"]
    from masklab.cli.compare_axis import _cell_text

    assert [_cell_text(rows[r]) for r in (0.1, 0.5, 0.9)] == [
        "0.9100 ± 0.0248 (95% CI, n=3)",
        "0.8500 (n=2, no spread)",
        "0.7000 (n=1)",
    ]


# --- kills, resumes, two studies at once ----------------------------------------------


def masklab(*args: str, runs: Path, **kw) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1", "MASKLAB_RUNS": str(runs)}
    return subprocess.Popen(
        [sys.executable, "-m", "masklab", *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        **kw,
    )


def infos(runs: Path) -> dict[str, dict]:
    if not runs.is_dir():
        return {}
    return {
        p.name: json.loads((p / "run.json").read_text())
        for p in runs.iterdir()
        if not p.name.startswith(".") and (p / "run.json").is_file()
    }


def wait_for(condition, timeout: float = 120.0) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError("timed out")


def slow_grid(tmp_path: Path, epochs: int = 12) -> Path:
    body = grid_spec(train={"epochs": epochs}, seeds=[0])
    path = tmp_path / "grid.yaml"
    path.write_text(yaml.safe_dump(body, sort_keys=False))
    return path


@pytest.mark.slow
def test_a_killed_study_resumes_and_trains_exactly_the_missing_runs(tmp_path):
    spec, runs = slow_grid(tmp_path), tmp_path / "runs"
    proc = masklab("train", spec, "--jobs", "2", "-q", runs=runs)
    try:
        # kill the driver and its workers once a run is done and another is part-way
        wait_for(
            lambda: (
                any(i["status"] == "done" for i in infos(runs).values())
                and any(i["status"] == "running" and i.get("epochs_done", 0) >= 1 for i in infos(runs).values())
            )
        )
        workers = {i["pid"] for i in infos(runs).values() if i["status"] == "running"}
        for pid in workers | {proc.pid}:
            os.kill(pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        proc.kill()
    before = infos(runs)
    finished = {rid for rid, i in before.items() if i["status"] == "done"}
    cut = {rid for rid, i in before.items() if i["status"] == "running"}
    assert finished and cut
    plan_after = json.loads(cli("train", spec, "--dry-run", "-f", "json", "--runs-dir", runs).stdout)
    states = {r["id"]: (r["state"], r["action"]) for r in plan_after["rows"]}
    assert all(states[rid] == ("done", "skip") for rid in finished)
    assert all(states[rid] == ("interrupted", "resume") for rid in cut)
    again = masklab("train", spec, "--jobs", "2", runs=runs)
    out, err = again.communicate(timeout=300)
    assert again.returncode == 0, err
    assert err.count("already done, reusing it") == len(finished)
    assert err.count("(resuming after epoch") == len(cut)
    assert err.count(": done  test_acc") == 4 - len(finished)
    assert all(i["status"] == "done" for i in infos(runs).values()) and len(infos(runs)) == 4
    for rid in infos(runs):
        assert len((runs / rid / "metrics.jsonl").read_text().splitlines()) == 12


@pytest.mark.slow
def test_a_worker_killed_mid_run_is_continued_from_its_checkpoint(tmp_path):
    spec, runs = slow_grid(tmp_path), tmp_path / "runs"
    proc = masklab("train", spec, "--jobs", "2", runs=runs)
    try:
        wait_for(lambda: any(i["status"] == "running" and i.get("epochs_done", 0) >= 2 for i in infos(runs).values()))
        victim, info = next(
            (r, i) for r, i in infos(runs).items() if i["status"] == "running" and i["epochs_done"] >= 2
        )
        os.kill(info["pid"], signal.SIGKILL)
        out, err = proc.communicate(timeout=300)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    assert f"{victim}: its worker died (exit -9); continuing it from its last checkpoint" in err
    assert f"{victim}: training 12 epochs x 7 steps (resuming after epoch" in err
    assert all(i["status"] == "done" for i in infos(runs).values()) and len(infos(runs)) == 4
    reference = tmp_path / "reference"
    single = masklab("train", spec, "-q", runs=reference)
    assert single.wait(timeout=300) == 0
    assert run_facts(runs)[victim] == run_facts(reference)[victim]


def test_two_studies_at_once_share_the_work_and_never_train_a_run_twice(tmp_path):
    spec, runs = slow_grid(tmp_path, epochs=3), tmp_path / "runs"
    procs = [masklab("train", spec, "-q", runs=runs) for _ in range(2)]
    outputs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    trained = sum(err.count(": done  test_acc") for _, err in outputs)
    assert trained == 4  # each run trained by exactly one of the two
    assert all(i["status"] == "done" for i in infos(runs).values()) and len(infos(runs)) == 4
    assert not [p for p in runs.iterdir() if p.name.startswith(".")]
    for rid in infos(runs):
        assert len((runs / rid / "metrics.jsonl").read_text().splitlines()) == 3


# --- Ray ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ray_local():
    """Ray as `--executor ray` starts it without --address (masklab's own settings: one CPU
    per usable core, a local node that is not declared dead for a slow minute), shut down
    after the module."""
    ray = pytest.importorskip("ray", reason="Ray is not installed: pip install 'masklab[ray]'")
    assert not ray.is_initialized()
    yield ray
    ray.shutdown()


def test_ray_gives_the_sequential_ids_and_metrics(trained, ray_local, tmp_path):
    args = ("-q", "--seeds", "0", "--executor", "ray", "-f", "json", "--runs-dir", tmp_path / "runs")
    out = cli("train", trained["spec"], *args)  # the four cells of seed 0, two tasks at a time
    assert out.exit_code == 0, out.stderr
    assert ray_local.is_initialized()  # started by masklab
    ids, facts = seed_0(trained)
    assert [r["run"] for r in json.loads(out.stdout)["rows"]] == ids and len(ids) == 4
    assert run_facts(tmp_path / "runs") == facts
    assert not [p for p in (tmp_path / "runs").iterdir() if p.name.startswith(".")]


def test_a_local_ray_instance_leaves_stderr_to_masklab(tmp_path):
    """Ray 2.5x logs a token-authentication notice when it starts a local instance; the
    instance masklab starts for the command keeps token authentication and says nothing."""
    pytest.importorskip("ray", reason="Ray is not installed: pip install 'masklab[ray]'")
    spec = tmp_path / "one.yaml"
    spec.write_text(yaml.safe_dump(tiny_spec(train={"epochs": 1}), sort_keys=False))
    proc = masklab("train", spec, "--executor", "ray", "-q", runs=tmp_path / "runs")
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    (rid,) = infos(tmp_path / "runs")
    assert err.splitlines() == [line for line in err.splitlines() if line.startswith(f"{rid}: done  test_acc ")]
    assert len(err.splitlines()) == 1 and "Token authentication" not in err


def test_without_ray_the_executor_names_the_install_command(workdir, write_spec, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)
    out = cli("train", write_spec(tiny_spec()), "--executor", "ray")
    assert out.exit_code == 2
    assert out.stderr == "Error: --executor ray needs Ray, which is not installed: pip install 'masklab[ray]'\n"


@pytest.mark.slow
def test_a_ray_worker_killed_mid_run_is_continued_from_its_checkpoint(tmp_path):
    pytest.importorskip("ray", reason="Ray is not installed: pip install 'masklab[ray]'")
    spec, runs = slow_grid(tmp_path), tmp_path / "runs"
    proc = masklab("train", spec, "--executor", "ray", runs=runs)
    try:
        # each epoch's run.json comes back from the task: its pid is the Ray worker's
        def cut() -> tuple[str, dict] | None:
            return next(
                (
                    (r, i)
                    for r, i in infos(runs).items()
                    if i["status"] == "running" and i.get("epochs_done", 0) >= 2 and i["pid"] != proc.pid
                ),
                None,
            )

        wait_for(lambda: cut() is not None, timeout=240)
        victim, info = cut()
        os.kill(info["pid"], signal.SIGKILL)
        out, err = proc.communicate(timeout=400)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    assert f"{victim}: its worker died (" in err and "continuing it from its last checkpoint" in err
    assert f"{victim}: training 12 epochs x 7 steps (resuming after epoch" in err
    assert all(i["status"] == "done" for i in infos(runs).values()) and len(infos(runs)) == 4
    assert not [p for p in runs.iterdir() if p.name.startswith(".")]
    reference = tmp_path / "reference"
    single = masklab("train", spec, "-q", runs=reference)
    assert single.wait(timeout=300) == 0
    assert run_facts(runs)[victim] == run_facts(reference)[victim]
