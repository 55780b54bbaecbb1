"""Work items keep each variant's spec and seeds apart, whatever its name holds: a run id
is `<name>-<hash>-s<seed>`, and a name may itself contain `-s` (`mask-study`, `-seeds`)."""

from __future__ import annotations

import json

import pytest
import yaml

from masklab.study import plan
from masklab.study.executors import work_items
from masklab.study.states import RunState
from masklab.study.tracking import member_ids

from conftest import cli, run_dirs, tiny_spec

NAMES = ["mask-study", "a-s1-s", "x-s0"]  # '-s' inside, at the end, and a name that looks like a run id


def study_of(name: str, seed_batch: int = 1) -> plan.Study:
    body = tiny_spec(name=name, seeds=[0, 1, 2], train={"seed_batch": seed_batch})
    body["variants"] = {"slow": {"train.lr": 0.001}, "fast": {"train.lr": 0.1}}
    return plan.plan_study(body, name)


@pytest.mark.parametrize("name", NAMES)
def test_one_run_per_item_keeps_each_variants_spec(name):
    study = study_of(name)
    items = work_items([RunState(p, "new", "train") for p in study.runs], batch_seeds=False)
    assert [i.ids for i in items] == [[p.id] for p in study.runs]
    assert [(i.spec.name, i.spec.train.lr, i.seeds) for i in items] == [
        (f"{name}-{variant}", lr, (seed,)) for variant, lr in (("slow", 0.001), ("fast", 0.1)) for seed in (0, 1, 2)
    ]


@pytest.mark.parametrize("name", NAMES)
def test_seed_groups_hold_the_seeds_of_one_variant(name):
    study = study_of(name, seed_batch=2)
    items = work_items([RunState(p, "new", "train") for p in study.runs])
    ids = [p.id for p in study.runs]
    assert [i.ids for i in items] == [ids[0:2], ids[2:3], ids[3:5], ids[5:6]]
    assert [i.spec.train.lr for i in items] == [0.001, 0.001, 0.1, 0.1]
    assert member_ids(items[0].id) == ids[0:2] and member_ids(items[1].id) == ids[2:3]


def test_a_study_named_with_s_trains_each_variant_with_its_own_spec(workdir, write_spec):
    body = tiny_spec(name="mask-study", seeds=[0], train={"epochs": 1})
    body["variants"] = {"slow": {"train.lr": 0.001}, "fast": {"train.lr": 0.1}}
    out = cli("train", write_spec(body), "-q", "-f", "json")
    assert out.exit_code == 0, out.stderr
    rows = json.loads(out.stdout)["rows"]
    assert [(r["run"].rsplit("-", 2)[0], r["status"]) for r in rows] == [
        ("mask-study-slow", "done"),
        ("mask-study-fast", "done"),
    ]
    assert out.stderr.count(": done  test_acc") == 2 and "reusing" not in out.stderr  # each trained once
    trained = {f.name.rsplit("-", 2)[0]: yaml.safe_load((f / "spec.yaml").read_text()) for f in run_dirs(workdir)}
    assert {name: spec["train"]["lr"] for name, spec in trained.items()} == {
        "mask-study-slow": 0.001,
        "mask-study-fast": 0.1,
    }
