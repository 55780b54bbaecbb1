"""Mutation testing of the modules whose mistakes would silently change results.

    pip install -e '.[mutation]'
    python tools/mutation.py                 # every module below, one after another
    python tools/mutation.py stats keyed     # some of them
    python tools/mutation.py stats --max-children 2
    python tools/mutation.py masks noise --every 3      # a sample: every third mutant
    python tools/mutation.py gates compare runs names housekeeping lifecycle executors --max-children 2

Each module is mutated by mutmut in a scratch copy of the repository
(.mutation/<module>/, git-ignored) against its own fast tests only, under `nice -n 10`.
Prints killed / survived / other per module, writes .mutation/<module>/survivors.txt
(`mutmut show NAME` there prints a mutant's diff) and .mutation/scores.json. Not part
of CI: a module takes minutes to tens of minutes on a 2-core machine. Scores and the
survivors judged harmless are recorded in docs/testing.md.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / ".mutation"

# module -> (file to mutate, the fast tests that guard it)
MODULES: dict[str, tuple[str, list[str]]] = {
    "stats": (
        "masklab/analysis/stats.py",
        ["tests/test_stats_exact.py", "tests/test_compare.py::test_describe_exact"]
        + [
            f"tests/test_compare.py::{t}"
            for t in (
                "test_paired_difference_is_scipys_paired_t",
                "test_unpaired_difference_is_welchs_interval_with_seeds_for_power",
                "test_two_seeds_can_decide_one_cannot_and_loss_is_lower_is_better",
                "test_min_effect_gives_equivalent_and_raises_the_bar_for_better",
                "test_holm_over_the_family_decides",
                "test_bca_bootstrap_from_forty_seeds",
                "test_mcnemar_for_two_single_runs",
            )
        ],
    ),
    "keyed": ("masklab/ops/keyed.py", ["tests/test_keyed.py", "tests/test_properties.py"]),
    "masks": (
        "masklab/ops/masks.py",
        ["tests/test_properties.py"]
        + [
            f"tests/test_ops.py::{t}"
            for t in (
                "test_exact_counts_are_exact",
                "test_bernoulli_rate_is_within_binomial_tolerance",
                "test_rect_clamps_instead_of_skipping_and_region_is_fixed",
                "test_fill_policies",
                "test_per_sample_range_and_probability",
            )
        ]
        + ["tests/test_mask_noise_options.py::test_fill_options"],
    ),
    "noise": (
        "masklab/ops/noise.py",
        [
            "tests/test_properties.py::test_salt_and_pepper_hits_exactly_round_amount_times_pixels",
            "tests/test_properties.py::test_per_image_ranges_draw_one_value_per_image",
            "tests/test_mnist_c.py::test_shot_noise_is_poisson_with_c_3",
            "tests/test_eval.py::test_impulse_noise_draws_per_pixel_like_scikit_image",
        ]
        + [
            f"tests/test_ops.py::{t}"
            for t in (
                "test_gaussian_noise_sigma_before_clipping",
                "test_salt_pepper_exact_counts_and_ratio",
                "test_shot_noise_is_poisson",
                "test_speckle_and_uniform_noise",
                "test_realized_stats_report_rate_and_magnitude",
            )
        ],
    ),
    "runs": (
        "masklab/store/runs.py",
        [
            "tests/test_store.py",
            "tests/test_run_names.py",
            "tests/test_housekeeping.py",
            "tests/test_run_lifecycle.py",
            "tests/test_disk_full.py",
        ],
    ),
    "names": (
        "masklab/store/names.py",
        [
            "tests/test_run_names.py",
            "tests/test_name_meanings.py",
            "tests/test_housekeeping.py",
            "tests/test_housekeeping_plans.py",
        ],
    ),
    "housekeeping": (
        "masklab/store/housekeeping.py",
        ["tests/test_housekeeping.py", "tests/test_housekeeping_plans.py", "tests/test_run_names.py"],
    ),
    "lifecycle": (
        "masklab/study/lifecycle.py",
        [
            "tests/test_resume.py",
            "tests/test_run_lifecycle.py",
            "tests/test_cli_train.py",
            "tests/test_lifecycle_endings.py",
        ]
        + [
            f"tests/test_seed_batch.py::{t}"
            for t in (
                "test_an_interrupted_group_resumes_bit_identically",
                "test_an_interrupted_group_resumes_one_seed_at_a_time",
                "test_a_diverging_seed_fails_alone_and_the_others_stay_resumable",
            )
        ],
    ),
    "gates": (
        "masklab/analysis/gates.py",
        [
            "tests/test_gates.py",
            "tests/test_compare.py::test_gate_parsing",
            "tests/test_cli_contract.py::test_compare_fail_if_must_parse",
        ],
    ),
    "compare": (
        "masklab/analysis/compare.py",
        [
            "tests/test_compare_pairing.py",
            "tests/test_compare_metrics.py",
            "tests/test_pins.py",
            "tests/test_gates.py",
            "tests/test_compare.py",
            "tests/test_run_names.py",
        ],
    ),
    "executors": (
        "masklab/study/executors/*",
        ["tests/test_work_items.py", "tests/test_ray_node_death.py"]
        + [
            f"tests/test_study.py::{t}"
            for t in (
                "test_work_items_batch_each_specs_seeds_by_action_in_plan_order",
                "test_dry_run_lists_every_run_with_its_state_and_creates_nothing",
                "test_jobs_2_gives_the_sequential_ids_and_metrics",
                "test_a_rerun_trains_nothing",
                "test_seed_groups_train_batched_in_process_and_with_jobs_alike",
                "test_a_seed_that_fails_its_batch_fails_alone_and_the_others_go_on",
                "test_the_study_view_in_a_pipe_and_with_q",
                "test_ray_gives_the_sequential_ids_and_metrics",
                "test_without_ray_the_executor_names_the_install_command",
            )
        ],
    ),
}
# Only tests that run the code in the pytest process kill its mutants: mutmut puts the
# mutated package first on sys.path, and a `python -m masklab` subprocess imports the
# installed one. Pool workers (spawned, with the parent's sys.path) see the mutants; Ray
# workers do not, so the selection of executors kills the driver's side of ray_tasks.py.
# mutmut forks a worker per mutant from a process that has run torch: a forked child
# waiting on torch's OpenMP pool would hang (and count as a timeout), so one thread
ONE_THREAD = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
COPY = ("masklab", "tests", "pyproject.toml", "data/mnist-mini.npz")


def scratch(name: str) -> Path:
    """A fresh copy of the package, tests and embedded data, configured for one module."""
    target, tests = MODULES[name]
    here = WORK / name
    shutil.rmtree(here, ignore_errors=True)
    here.mkdir(parents=True)
    for item in COPY:
        src, dst = ROOT / item, here / item
        dst.parent.mkdir(parents=True, exist_ok=True)
        if src.is_dir():
            shutil.copytree(src, dst, ignore=shutil.ignore_patterns("__pycache__", "snapshots"))
        else:
            shutil.copy2(src, dst)
    config = {
        "source_paths": ["masklab"],
        "only_mutate": [target],
        "also_copy": ["data/"],
        "pytest_add_cli_args": ["-q", "-p", "no:randomly", "-p", "no:cacheprovider"],
        "pytest_add_cli_args_test_selection": tests,
    }
    lines = ["", "[tool.mutmut]"] + [f"{k} = {json.dumps(v)}" for k, v in config.items()]
    with open(here / "pyproject.toml", "a") as f:
        f.write("\n".join(lines) + "\n")
    return here


def uncollected(tests: list[str]) -> list[str]:
    """The entries of a selection that the default suite does not collect: renamed, removed or slow."""
    files = sorted({t.split("::")[0] for t in tests if (ROOT / t.split("::")[0]).is_file()})
    listing = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", *files],
        cwd=ROOT,
        capture_output=True,
        text=True,
    ).stdout
    ids = [line for line in listing.splitlines() if "::" in line]
    return [t for t in tests if not any(i == t or i.startswith((t + "::", t + "[")) for i in ids)]


def check_selections(names: list[str]) -> None:
    """Stop before any mutant is tested if a selection names a test that no longer runs."""
    for name in names:
        missing = uncollected(MODULES[name][1])
        if missing:
            sys.exit(
                f"tools/mutation.py: the selection of {name} names tests the default suite does not collect "
                f"(renamed, removed or marked slow): {', '.join(missing)}; fix MODULES[{name!r}]"
            )


def states_of(here: Path) -> dict[str, list[str]]:
    """mutmut's verdicts in a scratch folder: state -> mutant names."""
    listing = subprocess.run(
        [sys.executable, "-m", "mutmut", "results", "--all", "true"], cwd=here, capture_output=True, text=True
    ).stdout
    states: dict[str, list[str]] = {}
    for line in listing.splitlines():
        m = re.match(r"\s*(\S+): (.+)$", line)
        if m:
            states.setdefault(m.group(2).strip(), []).append(m.group(1))
    return states


def run(name: str, max_children: int, every: int = 1) -> dict:
    here = scratch(name)
    began = time.time()
    cmd = ["nice", "-n", "10", sys.executable, "-m", "mutmut", "run", "--max-children", str(max_children)]
    names: list[str] = []
    if every > 1:  # a sample: mutants are generated (and none tested), then every k-th is tested
        subprocess.run([*cmd, "no-such-mutant"], cwd=here, check=False, capture_output=True, env=ONE_THREAD)
        names = sorted(n for found in states_of(here).values() for n in found)[::every]
    done = subprocess.run([*cmd, *names], cwd=here, check=False, stdout=subprocess.DEVNULL, env=ONE_THREAD)
    if done.returncode != 0:  # its clean tests failed, or pytest could not run them: no score
        sys.exit(f"tools/mutation.py: mutmut failed on {name} (exit {done.returncode}); its error is above")
    states = states_of(here)
    if names:
        chosen = set(names)
        states = {k: [n for n in v if n in chosen] for k, v in states.items()}
        states = {k: v for k, v in states.items() if v}
    killed = len(states.get("killed", []))
    timeout = len(states.get("timeout", []))  # the tests hang or run 15x longer: noticed, as mutmut counts it
    total = sum(len(v) for v in states.values())
    survivors = states.get("survived", [])
    (here / "survivors.txt").write_text("".join(s + "\n" for s in survivors))
    return {
        "module": MODULES[name][0],
        "mutants": total,
        "killed": killed,
        "survived": len(survivors),
        "other": {k: len(v) for k, v in states.items() if k not in ("killed", "survived", "timeout")},
        "timeout": timeout,
        "score": round((killed + timeout) / total, 3) if total else None,
        "minutes": round((time.time() - began) / 60, 1),
        "sample": f"every {every}th mutant" if every > 1 else "all",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("modules", nargs="*", choices=[*MODULES, []], default=list(MODULES))
    parser.add_argument("--max-children", type=int, default=1, help="mutants tested at once (default 1)")
    parser.add_argument("--every", type=int, default=1, metavar="K", help="test a sample: every K-th mutant by name")
    args = parser.parse_args()
    names = args.modules or list(MODULES)
    check_selections(names)
    scores = {}
    for name in names:
        scores[name] = run(name, args.max_children, args.every)
        s = scores[name]
        print(
            f"{name:6} {s['module']:28} {s['mutants']} mutants: {s['killed']} killed, {s['timeout']} timed out, "
            f"{s['survived']} survived, other {s['other']}: score {s['score']}, {s['minutes']} min",
            flush=True,
        )
    WORK.mkdir(exist_ok=True)
    path = WORK / "scores.json"
    old = json.loads(path.read_text()) if path.is_file() else {}
    path.write_text(json.dumps({**old, **scores}, indent=2) + "\n")


if __name__ == "__main__":
    main()
