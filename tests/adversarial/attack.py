"""An adversarial pass over the real CLI: a few hundred generated faults and hostile
inputs, each checked against the bars of issue 10.

    python tests/adversarial/attack.py                 # every case, 2 at a time
    python tests/adversarial/attack.py --only gate,store --jobs 1
    python tests/adversarial/attack.py --list          # the cases, not run
    python tests/adversarial/attack.py --only init --match source   # cases whose name holds "source"

Bars, for every case: the exit code documented for it; errors are one line starting
with `Error:`; never a traceback or an internal error; no run folder for refused input;
no hidden temporary file or folder left in the runs dir; nothing written outside the
runs dir (a planted link's target and the working folder are checked byte for byte);
no finished run lost or changed; every run left in a true state (no `running`, valid
JSON); and a gate that cannot be evaluated fails. A table of outcomes per category is
printed at the end (the one in docs/guarantees.md comes from it).
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import itertools
import json
import os
import random
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import zlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml

HERE = Path(__file__).resolve().parent
HOOK = HERE / "phase_hook.py"
sys.path.insert(0, str(HERE.parent))
from conftest import TINY as BASE  # noqa: E402 - the tests' tiny spec: a real model in about a second

TINY = {**BASE, "eval": {"ops": [{"op": "gaussian", "sigma": [0.2]}]}}


@dataclass
class Result:
    rc: int
    out: str
    err: str


@dataclass
class Case:
    category: str
    name: str
    body: Callable[[Path], list[str]]  # runs in a fresh folder, returns the bars it broke
    store: bool = False  # starts from a copy of the reference store


@dataclass
class Outcome:
    case: Case
    problems: list[str] = field(default_factory=list)
    seconds: float = 0.0


# --- running the CLI --------------------------------------------------------------------


def masklab(
    work: Path, *args: str, limit_fsize: int | None = None, hook: tuple[str, str] | None = None, timeout: float = 600
) -> Result:
    """The real CLI in a subprocess, with the runs dir in `work/runs`."""
    env = {**os.environ, "MASKLAB_RUNS": str(work / "runs"), "MASKLAB_CACHE": str(work / "cache")}
    env.pop("MASKLAB_DEBUG", None)
    command = [sys.executable, str(HOOK), *hook] if hook else [sys.executable, "-m", "masklab"]

    def limits() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (6 << 30, 6 << 30))  # a bomb becomes an error, not a dead machine
        if limit_fsize is not None:
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
            resource.setrlimit(resource.RLIMIT_FSIZE, (limit_fsize, limit_fsize))

    done = subprocess.run(
        [*command, *map(str, args)],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        preexec_fn=limits,
    )
    return Result(done.returncode, done.stdout, done.stderr)


def bars(result: Result, codes: tuple[int, ...], what: str = "") -> list[str]:
    """The exit code is one of `codes`; a failure is one `Error:` line; never a traceback."""
    problems = []
    tag = f"{what}: " if what else ""
    if result.rc not in codes:
        problems.append(f"{tag}exit {result.rc}, expected {codes}: {result.err.strip()[-300:]}")
    if "Traceback" in result.err or "internal error" in result.err:
        problems.append(f"{tag}traceback or internal error: {result.err.strip()[-300:]}")
    if result.rc not in (0, 3, 130):
        errors = [line for line in result.err.splitlines() if line.startswith("Error:")]
        if len(errors) != 1:
            problems.append(f"{tag}expected one 'Error:' line, got {len(errors)}: {result.err.strip()[-200:]}")
    if result.rc == 130:
        last = result.err.strip().splitlines()[-1:] or [""]
        if not (last[0] == "Interrupted." or last[0].startswith("Error: ")):
            problems.append(f"{tag}interrupted without a one-line message: {result.err.strip()[-200:]}")
    return problems


def snapshot(folder: Path, skip: str = "runs") -> dict[str, str]:
    """Every file under `folder` (not in `skip`) with its hash; links as their target."""
    out = {}
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder)
        if rel.parts and rel.parts[0] in (skip, "cache"):
            continue
        if path.is_symlink():
            out[str(rel)] = "-> " + os.readlink(path)
        elif path.is_file():
            out[str(rel)] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def store_state(work: Path) -> list[str]:
    """Bars on the runs dir: no hidden leftovers, no run left `running`."""
    runs = work / "runs"
    if not runs.is_dir():
        return []
    problems = [f"leftover {p.name}" for p in runs.iterdir() if p.name.startswith(".")]
    problems += [f"leftover {p.relative_to(runs)}" for p in runs.rglob("*.tmp")]
    for info in runs.glob("*/run.json"):
        if info.is_symlink():
            continue
        try:
            body = json.loads(info.read_text())
        except (ValueError, OSError):
            continue  # damage planted by the case itself
        if isinstance(body, dict) and body.get("status") == "running":
            problems.append(f"{info.parent.name} left running")
    return problems


def run_hashes(work: Path, rid: str) -> dict[str, str]:
    return snapshot(work / "runs" / rid, skip="eval")


# --- the reference store ----------------------------------------------------------------

REFERENCE: Path | None = None
IDS: dict[str, str] = {}  # tiny-s0, tiny-s1, long-s0 -> their run ids


def make_reference(root: Path) -> None:
    """Two finished runs of tiny, one interrupted run (checkpoint after epoch 1) of long."""
    global REFERENCE
    REFERENCE = root
    root.mkdir(parents=True)
    (root / "tiny.yaml").write_text(yaml.safe_dump({**TINY, "seeds": [0, 1]}))
    result = masklab(root, "train", "tiny.yaml", "-q", "-f", "json")
    assert result.rc == 0, result.err
    long = {**TINY, "name": "long", "train": {**TINY["train"], "epochs": 3}}
    (root / "long.yaml").write_text(yaml.safe_dump(long))
    result = masklab(root, "train", "long.yaml", "-q", hook=("checkpoint", "SIGINT"))
    for run in (root / "runs").iterdir():
        name, _, seed = run.name.rpartition("-s")
        IDS[f"{name.split('-')[0]}-s{seed}"] = run.name
    assert set(IDS) == {"tiny-s0", "tiny-s1", "long-s0"}, IDS
    info = json.loads((root / "runs" / IDS["long-s0"] / "run.json").read_text())
    assert info["status"] == "interrupted" and info["epochs_done"] == 1, info


def fresh(work: Path, store: bool) -> None:
    (work / "outside").mkdir()
    (work / "outside" / "precious.txt").write_text("precious")
    if store:
        shutil.copytree(REFERENCE / "runs", work / "runs", symlinks=True)
        for spec in ("tiny.yaml", "long.yaml"):
            shutil.copy(REFERENCE / spec, work / spec)


# --- case generators ----------------------------------------------------------------------


def spec_case(name: str, text: str | bytes, codes=(2,), args=()) -> Case:
    def body(work: Path) -> list[str]:
        path = work / "spec.yaml"
        path.write_bytes(text if isinstance(text, bytes) else text.encode())
        return refused(work, masklab(work, "train", path, "-q", *args), codes)

    return Case("spec", name, body)


def yaml_bomb(levels: int, fan: int, where: str) -> str:
    items = ['&a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    items += [f"&a{i} [" + ", ".join([f"*a{i - 1}"] * fan) + "]" for i in range(1, levels)]
    value = "[" + ", ".join(items) + "]"
    return {
        "train.epochs": f"name: b\ntrain:\n  epochs: {value}\n",
        "data.root": f"name: b\ndata:\n  root: {value}\n",
        "train_ops": f"name: b\ntrain_ops: {value}\n",
        "eval.ops": f"name: b\neval:\n  ops: {value}\n",
        "unknown": f"name: b\nlol: {value}\n",
        "variants": f"name: b\nvariants:\n  x:\n    train.epochs: {value}\n",
    }[where]


def spec_cases(rng: random.Random) -> list[Case]:
    cases = []
    for levels, fan, where in itertools.product(
        (7, 9, 12), (9, 30), ("train.epochs", "data.root", "train_ops", "eval.ops", "unknown", "variants")
    ):
        cases.append(spec_case(f"alias bomb {fan}^{levels} at {where}", yaml_bomb(levels, fan, where)))
    for depth, kind in itertools.product((65, 300, 5000, 50000), ("list", "map")):
        inner = "[" * depth + "]" * depth if kind == "list" else "{a: " * depth + "1" + "}" * depth
        cases.append(spec_case(f"nested {depth} {kind}s", f"name: d\ndata: {inner}\n"))
    for where in ("data", "train_ops", "model"):
        cases.append(spec_case(f"recursive alias at {where}", f"name: r\n{where}: &x [*x]\n"))
    garbage = {
        "empty": "",
        "comments only": "# nothing\n",
        "a list": "- 1\n- 2\n",
        "a string": "hello\n",
        "NUL bytes": b"name: x\x00\n",
        "latin-1": "name: caf\xe9\n".encode("latin-1"),
        "tabs": "name: x\ntrain:\n\tepochs: 3\n",
        "duplicate keys": "name: x\nname: y\n",
        "python tag": "name: !!python/object/apply:os.system ['touch pwned']\n",
        "huge": "name: x\n# " + "x" * (3 << 20) + "\n",
        "bad indentation": "name: x\n  train: 3\n",
        "unclosed bracket": "name: [x\n",
    }
    for name, text in garbage.items():
        cases.append(spec_case(f"file: {name}", text))
    keys = {
        "name": "name",
        "seeds": "seeds",
        "data.dataset": "data",
        "data.val_fraction": "data",
        "data.train_limit": "data",
        "data.test_limit": "data",
        "data.root": "data",
        "model.arch": "model",
        "model.width": "model",
        "model.hidden": "model",
        "train.epochs": "train",
        "train.batch_size": "train",
        "train.lr": "train",
        "train.optimizer": "train",
        "train.schedule": "train",
        "train.warmup": "train",
        "train.device": "train",
        "train.compile": "train",
        "train.precision": "train",
        "train.init_from": "train",
        "eval.ops": "eval",
        "eval.seed": "eval",
        "train_ops": "train_ops",
        "train_ops[0].rate": "train_ops",
    }
    values = [
        "[1, 2]",
        "{a: 1}",
        "-1",
        "1e400",
        ".nan",
        "-.inf",
        "null",
        "true",
        "10000000000000000000000",
        "'x'",
        "''",
    ]
    for key, value in rng.sample(list(itertools.product(keys, values)), 90):
        base = {k: v for k, v in TINY.items() if k != "eval"}
        if key.startswith("train_ops"):
            base["train_ops"] = [{"op": "patch", "rate": 0.3}]
        text = yaml.safe_dump(base) + "\n"
        cases.append(spec_case(f"--set {key}={value}", text, codes=(0, 1, 2), args=("--set", f"{key}={value}")))
    cases.append(
        spec_case("--set with a bomb", "name: s\n", args=("--set", "train.epochs=" + yaml_bomb(9, 9, "unknown")[8:]))
    )
    cases.append(spec_case("--set with deep nesting", "name: s\n", args=("--set", "data=" + "[" * 3000 + "]" * 3000)))
    for missing in ("nope.yaml", ".", "/dev/null"):
        cases.append(Case("spec", f"spec path {missing}", lambda w, m=missing: bars(masklab(w, "train", m), (2,))))
    return cases


def arrays(n: int = 60, h: int = 8, w: int = 8) -> dict[str, np.ndarray]:
    img = lambda k, hh=h, ww=w: (np.arange(k * hh * ww) % 251).astype(np.uint8).reshape(k, hh, ww)  # noqa: E731
    lab = lambda k: (np.arange(k) % 3).astype(np.int64)  # noqa: E731
    return {"train_images": img(n), "train_labels": lab(n), "test_images": img(20), "test_labels": lab(20)}


def data_cases() -> list[Case]:
    base = arrays()
    lab = base["train_labels"]
    variants: dict[str, dict] = {
        "label 10^9": {"train_labels": np.r_[lab[:-1], [10**9]]},
        "label 2^31-1": {"train_labels": np.r_[lab[:-1], [2**31 - 1]]},
        "uint64 max label": {"train_labels": np.r_[lab[:-1].astype(np.uint64), np.array([2**64 - 1], np.uint64)]},
        "int8 negative": {"test_labels": -np.ones(20, np.int8)},
        "bool labels": {"train_labels": lab.astype(bool)},
        "float labels": {"train_labels": lab.astype(np.float64)},
        "string labels": {"train_labels": lab.astype(str)},
        "2-D labels": {"train_labels": lab.reshape(60, 1)},
        "too few labels": {"train_labels": lab[:10]},
        "test 9x9": {"test_images": np.zeros((20, 9, 9), np.uint8)},
        "train 3 channels": {"train_images": np.zeros((60, 3, 8, 8), np.uint8)},
        "empty test": {"test_images": np.zeros((0, 8, 8), np.uint8), "test_labels": np.zeros(0, np.int64)},
        "empty train": {"train_images": np.zeros((0, 8, 8), np.uint8), "train_labels": np.zeros(0, np.int64)},
        "zero-size images": {
            "train_images": np.zeros((60, 0, 0), np.uint8),
            "test_images": np.zeros((20, 0, 0), np.uint8),
        },
        "zero channels": {
            "train_images": np.zeros((60, 0, 8, 8), np.uint8),
            "test_images": np.zeros((20, 0, 8, 8), np.uint8),
        },
        "1-D images": {"train_images": np.zeros(60, np.uint8)},
        "5-D images": {"train_images": np.zeros((60, 1, 1, 8, 8), np.uint8)},
        "NaN pixels": {"train_images": np.full((60, 8, 8), np.nan, np.float32)},
        "inf pixels": {"test_images": np.full((20, 8, 8), np.inf, np.float64)},
        "complex pixels": {"train_images": np.zeros((60, 8, 8), np.complex64)},
        "object pixels": {"train_images": np.array([None] * 60, dtype=object)},
        "one image": {"train_images": np.zeros((1, 8, 8), np.uint8), "train_labels": np.zeros(1, np.int64)},
    }
    cases = [npz_case(name, {**base, **change}) for name, change in variants.items()]
    manifests = {
        "manifest a list": [1],
        "manifest no source": {"split": "train"},
        "manifest source a string": {"source": "mnist-mini", "split": "train"},
        "manifest bad split": {"source": {"dataset": "mnist-mini", "fingerprint": "x"}, "split": "val"},
        "manifest copies -1": {"source": {"dataset": "mnist-mini", "fingerprint": "x"}, "split": "train", "copies": -1},
        "manifest copies 7": {"source": {"dataset": "mnist-mini", "fingerprint": "x"}, "split": "train", "copies": 7},
        "manifest copies 'x'": {
            "source": {"dataset": "mnist-mini", "fingerprint": "x"},
            "split": "train",
            "copies": "x",
        },
        "manifest sha a list": {
            "source": {"dataset": "mnist-mini", "fingerprint": "x"},
            "split": "train",
            "sha256": [],
        },
        "manifest wrong fingerprint": {"source": {"dataset": "mnist-mini", "fingerprint": "x"}, "split": "train"},
        "manifest unknown dataset": {"source": {"dataset": "imagenet", "fingerprint": "x"}, "split": "train"},
        "manifest self": {"source": {"dataset": "npz:SELF", "fingerprint": "x"}, "split": "train"},
        "manifest deep JSON": "DEEP",
    }
    for name, manifest in manifests.items():
        cases.append(manifest_case(name, manifest))
    raw = {
        "random bytes": os.urandom(4096),
        "empty file": b"",
        "a .npy": b"NPY",
        "truncated zip": b"PK\x03\x04" + b"\x00" * 40,
        "a pickle": b"\x80\x04\x95" + b"\x00" * 20,
    }
    for name, content in raw.items():
        cases.append(npz_case(name, None, raw=content))
    cases += idx_cases()
    return cases


def train_on(work: Path, dataset: str) -> Result:
    spec = {**TINY, "data": {"dataset": dataset, "val_fraction": 0.2}}
    spec.pop("eval")
    (work / "d.yaml").write_text(yaml.safe_dump(spec))
    return masklab(work, "train", "d.yaml", "-q")


def refused(work: Path, result: Result, codes=(1, 2)) -> list[str]:
    """Bars for input that may be refused: refused means no run folder, unless the run
    started and failed (a diverged training keeps its folder, marked failed)."""
    problems = bars(result, codes)
    if result.rc != 0 and (work / "runs").exists():
        for folder in (work / "runs").iterdir():
            info = json.loads((folder / "run.json").read_text()) if (folder / "run.json").is_file() else {}
            if info.get("status") != "failed":
                problems.append(f"a run folder ({info.get('status')}) exists after refused input")
    return problems


def npz_case(name: str, contents: dict | None, raw: bytes | None = None) -> Case:
    def body(work: Path) -> list[str]:
        path = work / "d.npz"
        if raw is not None:
            if raw == b"NPY":
                np.save(work / "a.npy", np.zeros(3))
                os.replace(work / "a.npy", path)
            else:
                path.write_bytes(raw)
        else:
            np.savez(path, **contents)
        codes = (0,) if name == "never" else (1, 2)
        return refused(work, train_on(work, f"npz:{path}"), codes)

    return Case("data", f"npz: {name}", body)


def manifest_case(name: str, manifest: object) -> Case:
    def body(work: Path) -> list[str]:
        path = work / "m.npz"
        text = json.dumps(manifest).replace("SELF", str(path)) if manifest != "DEEP" else "[" * 100000 + "]" * 100000
        images = np.zeros((10, 28, 28), np.float32)
        np.savez(path, images=images, labels=np.zeros(10, np.int64), manifest=np.array(text))
        return refused(work, train_on(work, f"npz:{path}"))

    return Case("data", f"npz: {name}", body)


def idx_cases() -> list[Case]:
    def header(dims: list[int], dtype: int = 8) -> bytes:
        return bytes([0, 0, dtype, len(dims)]) + b"".join(d.to_bytes(4, "big") for d in dims)

    good_img = header([40, 28, 28]) + bytes(40 * 28 * 28)
    good_lab = header([40]) + bytes(i % 10 for i in range(40))
    variants = {
        "huge dims": (header([2**32 - 1] * 3) + b"\x00" * 64, good_lab),
        "zero images": (header([0, 28, 28]), header([0])),
        "zero-size": (header([40, 0, 0]), good_lab),
        "labels 2-D": (good_img, header([40, 1]) + bytes(40)),
        "labels int32": (good_img, header([40], 0x0C) + bytes(160)),
        "count mismatch": (good_img, header([39]) + bytes(39)),
        "truncated": (good_img[:-100], good_lab),
        "longer": (good_img + b"x", good_lab),
        "bad magic": (b"\x89PNG" + good_img[4:], good_lab),
        "4 dims": (header([40, 1, 28, 28]) + bytes(40 * 28 * 28), good_lab),
        "gzip garbage": (b"\x1f\x8b" + os.urandom(200), good_lab),
        "labels > 9 in test": (good_img, good_lab),
    }
    cases = []
    for name, (images, labels_) in variants.items():

        def body(work: Path, images=images, labels_=labels_, name=name) -> list[str]:
            folder = work / "idx"
            folder.mkdir()
            test_labels = (
                header([40]) + bytes(200 + i % 50 for i in range(40)) if name == "labels > 9 in test" else labels_
            )
            for stem, data in (
                ("train-images-idx3-ubyte", images),
                ("train-labels-idx1-ubyte", labels_),
                ("t10k-images-idx3-ubyte", good_img),
                ("t10k-labels-idx1-ubyte", test_labels),
            ):
                (folder / stem).write_bytes(data)
            if name == "labels > 9 in test":  # valid files whose test labels exceed the training classes
                return refused(work, train_on(work, f"idx:{folder}"), (0, 1))
            return refused(work, train_on(work, f"idx:{folder}"))

        cases.append(Case("data", f"idx: {name}", body))
    return cases


CORRUPTIONS = {
    "empty": b"",
    "half": None,  # the first half of the real file
    "a JSON list": b"[1, 2]",
    "a JSON string": b'"hello"',
    "a number": b"42",
    "null": b"null",
    "garbage": bytes(range(256)),
    "NaN": b'{"test_acc": NaN, "status": "done"}',
    "deep JSON": b"[" * 200000,
    "YAML bomb": yaml_bomb(9, 9, "unknown").encode(),
    "a pickle": b"PICKLE",
}
PLANTS = ("link outside", "link to /dev/zero", "fifo", "folder", "removed")
FILES = ("run.json", "summary.json", "spec.yaml", "metrics.jsonl", "eval/clean.json", "model.pt", "checkpoint.pt")


def corrupt(path: Path, how: str, work: Path) -> None:
    real = path.read_bytes() if path.exists() else b""
    if path.exists() or path.is_symlink():
        path.unlink()
    path.parent.mkdir(exist_ok=True)
    if how == "half":
        path.write_bytes(real[: len(real) // 2])
    elif how == "a pickle":
        import pickle

        path.write_bytes(pickle.dumps({"w": Evil()}))
    elif how == "link outside":
        path.symlink_to(work / "outside" / "precious.txt")
    elif how == "link to /dev/zero":
        path.symlink_to("/dev/zero")
    elif how == "fifo":
        os.mkfifo(path)
    elif how == "folder":
        path.mkdir()
    elif how != "removed":
        path.write_bytes(CORRUPTIONS[how])


class Evil:
    def __reduce__(self):
        return (os.system, ("touch pwned",))


def store_case(file: str, how: str, commands: tuple[str, ...]) -> Case:
    def body(work: Path) -> list[str]:
        bad, good = IDS["tiny-s1"], IDS["tiny-s0"]
        if file == "eval/clean.json":
            (work / "runs" / bad / "eval").mkdir()
            (work / "runs" / bad / "eval" / "clean.json").write_text('{"metrics": {"test_acc": 0.5}, "name": "clean"}')
        corrupt(work / "runs" / bad / file, how, work)
        kept = run_hashes(work, good)
        problems = []
        listed = masklab(work, "runs", "-f", "json")
        problems += bars(listed, (0,), "runs")
        if listed.rc == 0:
            rows = {r["id"]: r for r in json.loads(listed.out)["rows"]}
            if rows.get(good, {}).get("status") != "done":
                problems.append("runs: the sound run is not listed as done")
        problems += bars(masklab(work, "show", good), (0,), "show good")
        problems += bars(masklab(work, "show", bad), (0, 1), "show damaged")
        problems += bars(masklab(work, "compare", good), (0,), "compare good")
        gate = masklab(work, "compare", "tiny", "--fail-if", "test_acc.mean < 0")
        consequential = file in ("run.json", "summary.json", "spec.yaml", "eval/clean.json")
        harmless = how == "removed" and file in ("metrics.jsonl", "eval/clean.json")
        problems += bars(gate, (3,) if consequential and not harmless else (0, 3), "gate over the damaged group")
        if "eval" in commands:
            problems += bars(masklab(work, "eval", "tiny"), (0, 1), "eval tiny")
            problems += bars(masklab(work, "eval", good), (0,), "eval good")
        if "resume" in commands:
            problems += bars(masklab(work, "train", "tiny.yaml", "--seeds", "1", "--resume", "-q"), (0, 1), "resume")
        if run_hashes(work, good) != kept:
            problems.append("the sound run changed")
        return problems

    return Case("store", f"{file}: {how}", body, store=True)


def store_cases(rng: random.Random) -> list[Case]:
    cases = []
    for file, how in itertools.product(FILES, [*CORRUPTIONS, *PLANTS]):
        commands = ("eval", "resume") if rng.random() < 0.25 else ()
        cases.append(store_case(file, how, commands))
    return cases


WRITTEN = ("run.json", "summary.json", "metrics.jsonl", "model.pt", "checkpoint.pt", "spec.yaml", ".lock", "eval")


def link_case(name: str, command: str) -> Case:
    """A link planted where masklab writes; the command must not write through it."""

    def body(work: Path) -> list[str]:
        rid = IDS["long-s0"] if command == "resume" else IDS["tiny-s0"]
        target = work / "runs" / rid / name
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
        elif target.exists() or target.is_symlink():
            target.unlink()
        target.symlink_to(work / "outside" if name == "eval" else work / "outside" / "precious.txt")
        before = snapshot(work)
        args = {
            "resume": ("train", "long.yaml", "--resume", "-q"),
            "force": ("train", "tiny.yaml", "--seeds", "0", "--force", "-q"),
            "eval": ("eval", rid, "--op", "gaussian:sigma=0.1"),
        }[command]
        problems = bars(masklab(work, *args), (0, 1))
        if snapshot(work) != before:
            problems.append("something outside the runs dir changed")
        return problems

    return Case("links", f"{name} planted, then {command}", body, store=True)


def link_cases() -> list[Case]:
    cases = [link_case(name, command) for name, command in itertools.product(WRITTEN, ("resume", "force", "eval"))]

    def run_folder_link(work: Path) -> list[str]:  # the run folder itself replaced by a link
        rid = IDS["long-s0"]
        shutil.move(work / "runs" / rid, work / "elsewhere")
        (work / "runs" / rid).symlink_to(work / "elsewhere")
        before = snapshot(work)
        problems = bars(masklab(work, "train", "long.yaml", "--resume", "-q"), (1,))
        return problems + (["the linked folder was written"] if snapshot(work) != before else [])

    cases.append(Case("links", "run folder is a link, then resume", run_folder_link, store=True))
    return cases


SIGNAL_PHASES = ("spec", "data", "create", "step", "checkpoint", "test", "summary", "between", "stage", "commit")


def signal_case(phase: str, sig: str, force: bool) -> Case:
    def body(work: Path) -> list[str]:
        spec = {**TINY, "seeds": [0, 1]}
        (work / "s.yaml").write_text(yaml.safe_dump(spec))
        if force:
            first = masklab(work, "train", "s.yaml", "-q")
            if first.rc:
                return [f"setup failed: {first.err[-200:]}"]
        before = {p.name: run_hashes(work, p.name) for p in (work / "runs").iterdir()} if force else {}
        result = masklab(work, "train", "s.yaml", "-q", *(("--force",) if force else ()), hook=(phase, sig))
        expected = (
            (130,)
            if phase in ("spec", "data", "create", "step", "checkpoint", "test", "summary", "between")
            else (0, 130)
        )
        if force and phase in ("create",):
            expected = (0,)  # --force stages instead of creating: that phase never comes
        if not force and phase in ("stage", "commit"):
            expected = (0,)
        problems = bars(result, expected) + store_state(work)
        if force and result.rc == 130:  # an interrupted replacement leaves each old run whole or replaced whole
            for rid, hashes in before.items():
                now = run_hashes(work, rid)
                info = json.loads((work / "runs" / rid / "run.json").read_text())
                if now != hashes and info.get("status") != "done":
                    problems.append(f"{rid}: neither the old run nor a finished new one")
        resumed = masklab(work, "train", "s.yaml", "--resume", "-q")
        problems += bars(resumed, (0,), "resume after")
        for info in (work / "runs").glob("*/run.json"):
            body_ = json.loads(info.read_text())
            if body_.get("status") != "done" or "error" in body_:
                problems.append(f"{info.parent.name} after resume: {body_.get('status')} {body_.get('error')}")
        return problems

    return Case("signals", f"{sig} at {phase}{' (--force)' if force else ''}", body)


def timed_signal_case(delay: float, sig: str) -> Case:
    def body(work: Path) -> list[str]:
        (work / "s.yaml").write_text(yaml.safe_dump({**TINY, "seeds": [0, 1]}))
        env = {**os.environ, "MASKLAB_RUNS": str(work / "runs")}
        proc = subprocess.Popen(
            [sys.executable, "-m", "masklab", "train", "s.yaml", "-q"],
            cwd=work,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        time.sleep(delay)
        proc.send_signal(getattr(signal, sig))
        out, err = proc.communicate(timeout=600)
        problems = bars(Result(proc.returncode, out, err), (0, 130)) + store_state(work)
        problems += bars(masklab(work, "train", "s.yaml", "--resume", "-q"), (0,), "resume after")
        return problems

    return Case("signals", f"{sig} after {delay:.2f} s", body)


def eval_signal_case(phase: str, sig: str) -> Case:
    def body(work: Path) -> list[str]:
        kept = run_hashes(work, IDS["tiny-s0"])
        result = masklab(work, "eval", IDS["tiny-s0"], "--op", "gaussian:sigma=0.1,0.3", hook=(phase, sig))
        problems = bars(result, (130,)) + store_state(work)
        if run_hashes(work, IDS["tiny-s0"]) != kept:
            problems.append("eval changed the run's own files")
        return problems

    return Case("signals", f"eval: {sig} at {phase}", body, store=True)


def signal_cases(rng: random.Random) -> list[Case]:
    cases = [signal_case(p, s, False) for p, s in itertools.product(SIGNAL_PHASES, ("SIGINT", "SIGTERM"))]
    cases += [signal_case(p, "SIGTERM", True) for p in ("data", "step", "test", "stage", "commit")]
    cases += [eval_signal_case(p, s) for p, s in itertools.product(("eval", "eval-write"), ("SIGINT", "SIGTERM"))]
    cases += [timed_signal_case(rng.uniform(0.5, 6.0), rng.choice(("SIGINT", "SIGTERM"))) for _ in range(12)]
    return cases


def disk_case(limit: int, command: str) -> Case:
    def body(work: Path) -> list[str]:
        args = {
            "train": ("train", "tiny.yaml", "--seeds", "5", "-q"),
            "resume": ("train", "long.yaml", "--resume", "-q"),
            "eval": ("eval", IDS["tiny-s0"], "--op", "gaussian:sigma=0.1,0.2,0.3"),
        }[command]
        kept = run_hashes(work, IDS["tiny-s1"])
        result = masklab(work, *args, limit_fsize=limit)
        problems = bars(result, (0, 1)) + store_state(work)
        if result.rc == 1 and "cannot write" not in result.err and "cannot create run" not in result.err:
            problems.append(f"the error does not name the path: {result.err.strip()[-200:]}")
        if run_hashes(work, IDS["tiny-s1"]) != kept:
            problems.append("an unrelated run changed")
        for info in (work / "runs").glob("*/run.json"):
            body_ = json.loads(info.read_text())
            if result.rc == 1 and body_.get("status") == "failed" and "cannot write" not in body_.get("error", ""):
                problems.append(f"{info.parent.name}: failed without the reason")
        return problems

    return Case("disk", f"{command} with files limited to {limit} bytes", body, store=True)


def disk_cases() -> list[Case]:
    return [
        disk_case(limit, c)
        for limit, c in itertools.product((300, 1500, 6000, 30000, 120000), ("train", "resume", "eval"))
    ]


def gate_case(name: str, build: Callable[[Path], None], gate: str, code: int, extra: tuple[str, ...] = ()) -> Case:
    def body(work: Path) -> list[str]:
        build(work / "runs")
        result = masklab(work, "compare", "ref", "cand", "--fail-if", gate, *extra)
        return bars(result, (code,))

    return Case("gate", f"{name}: {gate}{' ' + ' '.join(extra) if extra else ''}", body)


def fake(root: Path, name: str, seed: int, h: str, summary: dict | None, status: str = "done", **info) -> None:
    folder = root / f"{name}-{h}-s{seed}"
    folder.mkdir(parents=True)
    (folder / "spec.yaml").write_text(yaml.safe_dump({**TINY, "name": name, "seeds": [seed]}))
    body = {"id": folder.name, "name": name, "group": f"{name}-{h}", "seed": seed, "status": status, **info}
    (folder / "run.json").write_text(json.dumps(body))
    if summary is not None:
        (folder / "summary.json").write_text(json.dumps(summary))


def groups(ref: list, cand: list, statuses: dict | None = None) -> Callable[[Path], None]:
    def build(root: Path) -> None:
        for seed, v in enumerate(ref):
            fake(root, "ref", seed, "aaaaaaaa", {"test_acc": v, "acc@gaussian(sigma=0.2)": v - 0.1})
        for seed, v in enumerate(cand):
            status = (statuses or {}).get(seed, "done")
            summary = None if v == "none" else ({} if v == "missing" else {"test_acc": v, "acc@gaussian(sigma=0.2)": v})
            text_nan = v == "nan"
            if text_nan:
                summary = {"test_acc": 0.0}
            fake(root, "cand", seed, "bbbbbbbb", summary if status == "done" else None, status, error="boom")
            if text_nan:
                (root / f"cand-bbbbbbbb-s{seed}" / "summary.json").write_text('{"test_acc": NaN}')

    return build


def gate_cases() -> list[Case]:
    three = [0.90, 0.91, 0.92]
    cases = []
    for field_ in ("", ".diff", ".ci_low", ".ci_high", ".p", ".mean"):
        for status in ("failed", "interrupted", "running"):
            build = groups(three, [0.95, 0.95, 0.95], {2: status})
            cases.append(gate_case(f"candidate seed 2 {status}", build, f"test_acc{field_} < -1", 3))
            cases.append(
                gate_case(f"candidate seed 2 {status}", build, f"test_acc{field_} < -1", 0, ("--allow-missing",))
            )
        for broken in ("nan", "missing"):
            build = groups(three, [0.95, broken, 0.93])
            cases.append(gate_case(f"candidate seed 1 {broken}", build, f"test_acc{field_} < -1", 3))
        cases.append(
            gate_case("all candidates failed", groups(three, [0.9], {0: "failed"}), f"test_acc{field_} < -1", 3)
        )
    for field_ in (".p", ".ci_low", ".ci_high"):
        cases.append(gate_case("n=1 per group", groups([0.9], [0.8]), f"test_acc{field_} < 2", 3))
        cases.append(gate_case("n=1 per group", groups([0.9], [0.8]), f"test_acc{field_} < 2", 0, ("--allow-missing",)))
    for gate, code in (
        ("acc@gaussian(sigma=0.2) < -0.5", 0),
        ("acc@gaussian(sigma=0.2) > 0", 3),
        ("acc@gaussian(sigma=0.2).mean < 0.99", 3),
        ("tst_acc < 0", 2),
        ("test_acc < nan", 2),
        ("test_acc is low", 2),
        ("test_acc < 0.05", 3),
        ("test_acc < 0.04", 0),
        ("test_acc.mean < 0.94", 0),
        ("test_acc.mean >= 0.94", 3),
    ):
        cases.append(gate_case("two sound groups", groups(three, [0.95, 0.95, 0.96]), gate, code))
    return cases


def concurrency_cases() -> list[Case]:
    def same_run_twice(work: Path, flags: tuple[tuple[str, ...], tuple[str, ...]]) -> list[str]:
        (work / "c.yaml").write_text(yaml.safe_dump({**TINY, "name": "c", "train": {**TINY["train"], "epochs": 4}}))
        env = {**os.environ, "MASKLAB_RUNS": str(work / "runs")}
        procs = [
            subprocess.Popen(
                [sys.executable, "-m", "masklab", "train", "c.yaml", "-q", *f],
                cwd=work,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for f in flags
        ]
        problems = []
        for proc in procs:
            out, err = proc.communicate(timeout=600)
            problems += bars(Result(proc.returncode, out, err), (0, 1))
            if proc.returncode == 1 and "another process" not in err and "already exists" not in err:
                problems.append(f"refused for another reason: {err.strip()[-200:]}")
        problems += store_state(work)
        infos = [json.loads(p.read_text()) for p in (work / "runs").glob("*/run.json")]
        if [i["status"] for i in infos] != ["done"]:
            problems.append(f"statuses {[i['status'] for i in infos]}")
        return problems

    combos = [
        ((), ()),
        (("--force",), ("--force",)),
        (("--resume",), ()),
        (("--force",), ("--resume",)),
        ((), ("--force",)),
    ]
    return [
        Case(
            "concurrency",
            f"train {a or '-'} and train {b or '-'} at once",
            lambda w, a=a, b=b: same_run_twice(w, (a, b)),
        )
        for a, b in combos
    ]


def plot_cases() -> list[Case]:
    cases = []
    for target, code in (("out", 2), ("out/", 2), ("pic.txt", 2), ("pic", 0), ("pic.svg", 0), ("new/dir/pic.png", 0)):

        def body(work: Path, target=target, code=code) -> list[str]:
            (work / "out").mkdir()
            result = masklab(work, "compare", "tiny", "--plot", target)
            problems = bars(result, (code,))
            if (work / "out.png").exists():
                problems.append("wrote out.png beside the folder")
            if code == 0 and not (work / target).is_file():
                problems.append(f"{target} was not written where named")
            return problems

        cases.append(Case("plot", f"--plot {target}", body, store=True))
    return cases


# --- the driver ---------------------------------------------------------------------------


# --- issue 21: pinned inputs (data, decoded cache, init_from) and housekeeping -------------


def folder_state(folder: Path) -> dict[str, str]:
    """Every file of a folder (a run, the runs dir) with its hash; links as their target."""
    return snapshot(folder, skip="") if folder.exists() else {}


def pinned_data(path: Path, seed: int) -> None:
    """60 + 20 8x8 images in 3 classes, drawn by `seed`: the same size whatever the seed."""
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, (80, 8, 8), dtype=np.uint8)
    y = (np.arange(80) % 3).astype(np.int64)
    np.savez(path, train_images=x[:60], train_labels=y[:60], test_images=x[60:], test_labels=y[60:])


def _restore_mtime(path: Path, write: Callable[[Path], None]) -> None:
    before = os.stat(path)
    write(path)
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))


def _replace(path: Path, seed: int) -> None:
    pinned_data(path.with_name("new.npz"), seed)
    os.replace(path.with_name("new.npz"), path)


def _relink(path: Path) -> None:
    pinned_data(path.with_name("other.npz"), 1)
    path.unlink()
    path.symlink_to(path.with_name("other.npz"))


def _copy_over(path: Path) -> None:
    shutil.copy(path, path.with_name("copy.npz"))
    os.replace(path.with_name("copy.npz"), path)


DATA_CHANGES: dict[str, tuple[Callable[[Path], None], bool]] = {  # name -> (change, the data is other now)
    "other values, same size and inode": (lambda p: pinned_data(p, 1), True),
    "edited in place, mtime put back": (lambda p: _restore_mtime(p, lambda q: pinned_data(q, 1)), True),
    "replaced by a new file": (lambda p: _replace(p, 1), True),
    "truncated": (lambda p: p.write_bytes(p.read_bytes()[:200]), True),
    "deleted": (lambda p: p.unlink(), True),
    "a link to other data": (_relink, True),
    "the same bytes, touched": (lambda p: os.utime(p, (1e9, 1e9)), False),
    "the same bytes, copied over": (_copy_over, False),
}
PIN_ACTIONS = ("reuse", "resume", "jobs", "new seed", "dry-run")


def pins_case(change: str, action: str) -> Case:
    """A run trained on npz data; the data changes; the study is run again."""
    alter, other = DATA_CHANGES[change]

    def body(work: Path) -> list[str]:
        data = work / "d.npz"
        pinned_data(data, 0)
        time.sleep(1.1)  # older than masklab's racy window: its digest is cached by identity
        spec = {**TINY, "data": {"dataset": "npz:d.npz", "val_fraction": 0.2}, "seeds": [0]}
        if action == "resume":
            spec["train"] = {**TINY["train"], "epochs": 3}
        (work / "p.yaml").write_text(yaml.safe_dump(spec))
        first = masklab(work, "train", "p.yaml", "-q", hook=("checkpoint", "SIGINT") if action == "resume" else None)
        if first.rc not in ((130,) if action == "resume" else (0,)):
            return [f"setup failed: {first.err[-200:]}"]
        before = folder_state(work / "runs")
        alter(data)
        args = {
            "reuse": (),
            "resume": ("--resume",),
            "jobs": ("--jobs", "2"),
            "new seed": ("--seeds", "1"),
            "dry-run": ("--dry-run", "-f", "json"),
        }[action]
        result = masklab(work, "train", "p.yaml", "-q", *args)
        if action == "dry-run":
            problems = bars(result, (0,))
            actions = [r["action"] for r in json.loads(result.out or "{}").get("rows", [])]
            if other and actions != ["refuse"] or not other and actions != ["skip"]:
                problems.append(f"dry run shows {actions}")
            return problems + (["the dry run changed the runs dir"] if folder_state(work / "runs") != before else [])
        if not other:
            return bars(result, (0,)) + store_state(work)
        problems = bars(result, (1,))
        if "Error: run " not in result.err:
            problems.append(f"the refusal does not name the run: {result.err.strip()[-200:]}")
        if folder_state(work / "runs") != before:
            problems.append("the runs dir changed although the run was refused")
        return problems

    return Case("pins", f"npz {change}, then {action}", body)


def idx_pins_case(change: str) -> Case:
    """The same for an IDX folder (gzip files, through the decoded-data cache)."""

    def body(work: Path) -> list[str]:
        folder = work / "idx"
        folder.mkdir()
        rng = np.random.default_rng(0)
        for split, n in (("train", 60), ("t10k", 20)):
            images = rng.integers(0, 256, (n, 8, 8), dtype=np.uint8)
            (folder / f"{split}-images-idx3-ubyte.gz").write_bytes(gzip.compress(idx_bytes(images), mtime=0))
            labels = (np.arange(n) % 3).astype(np.uint8)
            (folder / f"{split}-labels-idx1-ubyte.gz").write_bytes(gzip.compress(idx_bytes(labels), mtime=0))
        time.sleep(1.1)
        result = train_on(work, "idx:idx")
        if result.rc:
            return [f"setup failed: {result.err[-200:]}"]
        before = folder_state(work / "runs")
        labels = folder / "t10k-labels-idx1-ubyte.gz"
        content = idx_bytes(np.zeros(20, np.uint8))
        if change == "labels edited in place, mtime put back":
            _restore_mtime(labels, lambda p: p.write_bytes(gzip_sized(content, p.stat().st_size)))
        elif change == "a label file removed":
            labels.unlink()
        else:  # another folder's files moved in
            labels.write_bytes(gzip.compress(content, mtime=0))
        again = masklab(work, "train", "d.yaml", "-q")
        problems = bars(again, (1,))
        return problems + (["the runs dir changed"] if folder_state(work / "runs") != before else [])

    return Case("pins", f"idx {change}, then reuse", body)


def idx_bytes(array: np.ndarray) -> bytes:
    head = bytes([0, 0, 8, array.ndim]) + b"".join(d.to_bytes(4, "big") for d in array.shape)
    return head + array.tobytes()


def gzip_sized(content: bytes, size: int) -> bytes:
    """A gzip file of exactly `size` bytes holding `content` (a file name pads the header)."""
    deflate = zlib.compressobj(9, zlib.DEFLATED, -15)
    body = deflate.compress(content) + deflate.flush()
    trailer = zlib.crc32(content).to_bytes(4, "little") + len(content).to_bytes(4, "little")
    pad = max(0, size - 10 - len(body) - len(trailer) - 1)
    return b"\x1f\x8b\x08\x08\0\0\0\0\x00\xff" + b"n" * pad + b"\0" + body + trailer


def text_pins_case(change: str, other: bool) -> Case:
    def body(work: Path) -> list[str]:
        for label in ("a", "b"):
            (work / "texts" / label).mkdir(parents=True)
            for i in range(12):
                (work / "texts" / label / f"{i}.txt").write_text(f"{label} text number {i} " * 3)
        spec = {
            **TINY,
            "data": {"dataset": "text:texts", "val_fraction": 0.2},
            "model": {"arch": "bert", "dim": 16, "depth": 1, "heads": 2, "vocab_size": 64, "max_len": 16},
        }
        spec.pop("eval")
        (work / "t.yaml").write_text(yaml.safe_dump(spec))
        first = masklab(work, "train", "t.yaml", "-q")
        if first.rc:
            return [f"setup failed: {first.err[-200:]}"]
        before = folder_state(work / "runs")
        if change == "a text added to a class":
            (work / "texts" / "a" / "new.txt").write_text("another text")
        elif change == "a text edited":
            (work / "texts" / "b" / "3.txt").write_text("b text, edited")
        else:
            (work / "texts" / "a" / ".swp").write_text("an editor's file")
        again = masklab(work, "train", "t.yaml", "-q")
        problems = bars(again, (1,) if other else (0,))
        return problems + (["the runs dir changed"] if folder_state(work / "runs") != before else [])

    return Case("pins", f"text:DIR {change}, then reuse", body)


def pins_cases() -> list[Case]:
    cases = [pins_case(change, action) for change, action in itertools.product(DATA_CHANGES, PIN_ACTIONS)]
    cases += [
        idx_pins_case(c)
        for c in ("labels edited in place, mtime put back", "a label file removed", "a label file replaced")
    ]
    cases += [text_pins_case(c, o) for c, o in (("a text added to a class", True), ("a text edited", True))]
    return cases + [text_pins_case("a hidden file added", False)]


CACHE_DAMAGE = ("labels shifted", "images inverted", "truncated", "garbage", "empty", "another entry", "a folder")


def cache_case(how: str) -> Case:
    """The decoded-data cache entry of an IDX dataset is damaged or substituted; a new run
    on the same files must train on (and record) the files' data, not the entry's."""

    def body(work: Path) -> list[str]:
        folder = work / "idx"
        folder.mkdir()
        rng = np.random.default_rng(0)
        for split, n in (("train", 60), ("t10k", 20)):
            (folder / f"{split}-images-idx3-ubyte.gz").write_bytes(
                gzip.compress(idx_bytes(rng.integers(0, 256, (n, 8, 8), dtype=np.uint8)), mtime=0)
            )
            (folder / f"{split}-labels-idx1-ubyte.gz").write_bytes(
                gzip.compress(idx_bytes((np.arange(n) % 3).astype(np.uint8)), mtime=0)
            )
        first = train_on(work, "idx:idx")
        (entry,) = (work / "cache" / "decoded").glob("*.npz")
        if how in ("labels shifted", "images inverted", "another entry"):
            with np.load(entry) as z:
                arrays = {k: z[k] for k in z.files}
            if how == "labels shifted":
                arrays["test_y"] = (arrays["test_y"] + 1) % 3
            elif how == "images inverted":
                arrays["train_x"] = 255 - arrays["train_x"]
            else:
                arrays["key"] = np.array("0" * 24)
            np.savez(entry, **arrays)
        elif how == "a folder":
            entry.unlink()
            entry.mkdir()
        else:
            raw = entry.read_bytes()
            entry.write_bytes({"truncated": raw[: len(raw) // 2], "garbage": os.urandom(len(raw)), "empty": b""}[how])
        spec = yaml.safe_load((work / "d.yaml").read_text())
        spec["train"]["lr"] = 0.02  # another run, on the same files
        (work / "d.yaml").write_text(yaml.safe_dump(spec))
        second = masklab(work, "train", "d.yaml", "-q")
        problems = bars(first, (0,), "first") + bars(second, (0,), "second")
        prints = {json.loads(p.read_text())["data"]["fingerprint"] for p in (work / "runs").glob("*/run.json")}
        if len(prints) != 1:
            problems.append(f"the second run recorded other data than the files hold: {sorted(prints)}")
        if how != "a folder" and not (entry.is_file() and _entry_holds_the_files(entry, folder)):
            problems.append("the cache entry still holds other arrays than the files: it was trusted, not rebuilt")
        return problems

    return Case("cache", f"decoded entry {how}", body)


def _entry_holds_the_files(entry: Path, folder: Path) -> bool:
    """The decoded entry's arrays are what the IDX files hold."""
    decoded = {}
    for key, stem in (("train_x", "train-images"), ("test_y", "t10k-labels")):
        raw = gzip.decompress(next(folder.glob(f"{stem}-*.gz")).read_bytes())
        decoded[key] = np.frombuffer(raw[16 if key == "train_x" else 8 :], np.uint8)
    with np.load(entry) as z:
        return all(np.array_equal(z[k].reshape(-1).astype(np.uint8), v) for k, v in decoded.items())


def digest_cache_case(how: str) -> Case:
    """The digest cache's entries are damaged: the data is hashed again, never trusted."""

    def body(work: Path) -> list[str]:
        pinned_data(work / "d.npz", 0)
        time.sleep(1.1)
        first = train_on(work, "npz:d.npz")
        entries = list((work / "cache" / "digests").glob("*.json"))
        if first.rc or not entries:
            return [f"setup failed ({len(entries)} digest entries): {first.err[-200:]}"]
        for entry in entries:
            if how == "garbage":
                entry.write_bytes(os.urandom(64))
            elif how == "a folder":
                entry.unlink()
                entry.mkdir()
            else:  # a stale entry: another identity (inode 0) with the old digest
                body_ = json.loads(entry.read_text())
                body_["identity"][2] = 0
                entry.write_text(json.dumps(body_))
        pinned_data(work / "d.npz", 1)
        again = masklab(work, "train", "d.yaml", "-q")
        return bars(again, (1,))

    return Case("cache", f"digest entry {how}, data changed", body)


def cache_cases() -> list[Case]:
    return [cache_case(how) for how in CACHE_DAMAGE] + [
        digest_cache_case(h) for h in ("garbage", "a folder", "stale identity")
    ]


RETRAIN = """
import hashlib, json, sys
from masklab.store import weights
folder = sys.argv[1]
state = {k: v + 0.01 for k, v in weights.load_state(folder + "/model.pt").items()}
body = weights.to_bytes(state)
open(folder + "/model.pt", "wb").write(body)
info = json.load(open(folder + "/run.json"))
if sys.argv[2] == "recorded":
    info["model_sha256"] = hashlib.sha256(body).hexdigest()
json.dump(info, open(folder + "/run.json", "w"))
"""


def init_case(name: str) -> Case:
    """A pretraining run and a fine-tune from it (train.init_from); then the source changes."""

    def body(work: Path) -> list[str]:
        pre = {**TINY, "name": "pre"}
        (work / "pre.yaml").write_text(yaml.safe_dump(pre))
        (work / "ft.yaml").write_text(
            yaml.safe_dump({**TINY, "name": "ft", "train": {**TINY["train"], "init_from": "pre"}})
        )
        for spec in ("pre.yaml", "ft.yaml"):
            setup = masklab(work, "train", spec, "-q")
            if setup.rc:
                return [f"setup failed: {setup.err[-200:]}"]
        source = next((work / "runs").glob("pre-*"))
        args, codes = ("train", "ft.yaml", "-q"), (1,)
        if name in ("source trained again in place", "source model.pt tampered"):
            run = subprocess.run(
                [sys.executable, "-c", RETRAIN, str(source), "recorded" if "again" in name else "not"],
                capture_output=True,
                text=True,
            )
            if run.returncode:
                return [f"setup failed: {run.stderr[-200:]}"]
        elif name == "source trained again as a new group":
            masklab(work, "train", "pre.yaml", "-q", "--set", "train.epochs=3")
            codes = (2,)
        elif name == "source removed, a new fine-tune":
            shutil.rmtree(source)
            args = ("train", "ft.yaml", "-q", "--set", "train.lr=0.02")
        elif name == "source interrupted, a new fine-tune":
            info = json.loads((source / "run.json").read_text())
            (source / "run.json").write_text(json.dumps({**info, "status": "interrupted"}))
            args = ("train", "ft.yaml", "-q", "--set", "train.lr=0.02")
        elif name == "init_from a path outside the runs dir":
            shutil.copytree(source, work / "elsewhere" / source.name)
            args = ("train", "ft.yaml", "-q", "--set", f"train.init_from=elsewhere/{source.name}")
            codes = (1, 2)
        elif name == "init_from a link in the runs dir":
            shutil.copytree(source, work / "elsewhere" / source.name)
            (work / "runs" / "pre-0123abcd-s0").symlink_to(work / "elsewhere" / source.name)
            args = ("train", "ft.yaml", "-q", "--set", "train.init_from=pre-0123abcd-s0")
            codes = (1, 2)
        before = folder_state(work / "runs")
        result = masklab(work, *args)
        problems = bars(result, codes)
        if folder_state(work / "runs") != before:
            problems.append("the runs dir changed although the fine-tune was refused")
        if name == "source removed, a new fine-tune":
            dry = masklab(work, "train", "ft.yaml", "--dry-run", "-f", "json", "--set", "train.lr=0.02")
            rows = json.loads(dry.out or "{}").get("rows", [])
            if dry.rc or [r["action"] for r in rows] != ["needs source"]:
                problems.append(f"the dry run does not say the fine-tune needs its source: {dry.out[-200:]}")
        return problems

    return Case("init", name, body)


def init_cases() -> list[Case]:
    names = (
        "source trained again in place",
        "source trained again as a new group",
        "source model.pt tampered",
        "source removed, a new fine-tune",
        "source interrupted, a new fine-tune",
        "init_from a path outside the runs dir",
        "init_from a link in the runs dir",
    )
    return [init_case(n) for n in names]


def _plant(work: Path, target: str) -> str:
    """Something that is not a run of the store, and the name a command is given for it."""
    victim = work / "victim"
    victim.mkdir(exist_ok=True)
    (victim / "spec.yaml").write_text(yaml.safe_dump(TINY))
    (victim / "run.json").write_text(json.dumps({"status": "done", "name": "tiny", "seed": 0}))
    (victim / "thesis.tex").write_text("precious")
    if target.startswith("link"):
        (work / "runs" / "tiny-0123abcd-s9").symlink_to(
            victim if "victim" in target else work / "runs" / IDS["tiny-s0"]
        )
        return {
            "link to victim, by name": "tiny-0123abcd-s9",
            "link to victim, by path": "runs/tiny-0123abcd-s9",
            "link to a run, by name": "tiny-0123abcd-s9",
        }[target]
    if target == "a folder in the runs dir":
        (work / "runs" / "notes").mkdir()
        (work / "runs" / "notes" / "todo.txt").write_text("keep")
        return "notes"
    if target == "a hidden folder in the runs dir":
        shutil.copytree(victim, work / "runs" / ".trash-x")
        return ".trash-x"
    return {
        "victim by name": "victim",
        "victim by ./path": "./victim",
        "victim by absolute path": str(victim),
        "victim through ..": "runs/../victim",
        "a typo": "tiny-s7",
        "a prefix of another name": "tin",
    }[target]


HOUSE_TARGETS = (
    "victim by name",
    "victim by ./path",
    "victim by absolute path",
    "victim through ..",
    "link to victim, by name",
    "link to victim, by path",
    "link to a run, by name",
    "a folder in the runs dir",
    "a hidden folder in the runs dir",
    "a typo",
    "a prefix of another name",
)
HOUSE_COMMANDS = {
    "rm": ("rm",),
    "rm --dry-run": ("rm", "--dry-run"),
    "tag": ("tag", "REF", "k=v"),
    "tag --note": ("tag", "REF", "--note", "n"),
    "export": ("export", "--to", "tensorboard:tb"),
}


def house_case(target: str, command: str) -> Case:
    """rm/tag/export named at something that is not a run of the store: refused, nothing changed."""

    def body(work: Path) -> list[str]:
        ref = _plant(work, target)
        words = HOUSE_COMMANDS[command]
        args = [ref if w == "REF" else w for w in words] if "REF" in words else [*words, ref]
        if command == "export":
            args = ["export", ref, "--to", "tensorboard:tb"]
        before, runs_before = snapshot(work), folder_state(work / "runs")
        result = masklab(work, *args)
        problems = bars(result, (1,))
        if snapshot(work) != before:
            problems.append("something outside the runs dir changed")
        if folder_state(work / "runs") != runs_before:
            problems.append("the runs dir changed")
        return problems

    return Case("housekeeping", f"{command} {target}", body, store=True)


def prune_case(target: str) -> Case:
    def body(work: Path) -> list[str]:
        _plant(work, target)
        before = snapshot(work)
        result = masklab(work, "prune", "--older-than", "0", "-f", "json")
        problems = bars(result, (0,))
        if snapshot(work) != before:
            problems.append("something outside the runs dir changed")
        link, notes = work / "runs" / "tiny-0123abcd-s9", work / "runs" / "notes" / "todo.txt"
        if target.startswith("link") and not link.is_symlink() or "folder" in target and not notes.is_file():
            problems.append("prune removed a link or a folder that is not a run")
        rows = json.loads(result.out or "{}").get("rows", [])
        statuses = {r["run"]: r["status"] for r in rows if r["action"] == "remove run"}
        if statuses != {IDS["long-s0"]: "interrupted"}:
            problems.append(f"prune removed or reported {statuses}")
        return problems

    return Case("housekeeping", f"prune beside {target}", body, store=True)


def tag_damaged_case(how: str) -> Case:
    def body(work: Path) -> list[str]:
        info = work / "runs" / IDS["tiny-s0"] / "run.json"
        corrupt(info, how, work)
        before = folder_state(work / "runs")
        result = masklab(work, "tag", "tiny", "k=v")
        problems = bars(result, (1,))
        if "run.json" not in result.err and "symbolic link" not in result.err:
            problems.append(f"the refusal does not name the file: {result.err.strip()[-200:]}")
        if folder_state(work / "runs") != before:
            problems.append("a run.json was rewritten")
        return problems

    return Case("housekeeping", f"tag a run whose run.json is {how}", body, store=True)


def removal_report_case(command: str) -> Case:
    """rm and prune report each removed run with the status it had, and unlink removes only a link."""

    def body(work: Path) -> list[str]:
        if command == "rm --unlink":
            _plant(work, "link to victim, by name")
            before = snapshot(work)
            result = masklab(work, "rm", "--unlink", "tiny-0123abcd-s9")
            problems = bars(result, (0,))
            if os.path.lexists(work / "runs" / "tiny-0123abcd-s9") or snapshot(work) != before:
                problems.append("--unlink left the link or changed its target")
            return problems
        args = ("rm", IDS["tiny-s0"], IDS["long-s0"]) if command == "rm" else ("prune", "--older-than", "0")
        result = masklab(work, *args, "-f", "json")
        statuses = sorted(
            (r["run"], r["status"])
            for r in json.loads(result.out or "{}").get("rows", [])
            if r["action"] == "remove run"
        )
        expected = sorted([(IDS["tiny-s0"], "done"), (IDS["long-s0"], "interrupted")][0 if command == "rm" else 1 :])
        return bars(result, (0,)) + ([f"reported {statuses}, expected {expected}"] if statuses != expected else [])

    return Case("housekeeping", f"{command} reports statuses", body, store=True)


def housekeeping_cases() -> list[Case]:
    cases = [house_case(t, c) for t, c in itertools.product(HOUSE_TARGETS, HOUSE_COMMANDS)]
    cases += [prune_case(t) for t in ("link to victim, by name", "link to a run, by name", "a folder in the runs dir")]
    cases += [tag_damaged_case(how) for how in [*CORRUPTIONS, *PLANTS]]
    return cases + [removal_report_case(c) for c in ("rm", "prune", "rm --unlink")]


def all_cases(seed: int) -> list[Case]:
    sys.modules.setdefault("attack", sys.modules[__name__])  # run as a script: the case modules import it
    from limits_stores_drivers import cases as limits_stores_drivers  # issue 21: text, mlflow, search, drivers

    rng = random.Random(seed)
    return (
        spec_cases(rng)
        + data_cases()
        + store_cases(rng)
        + link_cases()
        + signal_cases(rng)
        + disk_cases()
        + gate_cases()
        + concurrency_cases()
        + plot_cases()
        + pins_cases()
        + cache_cases()
        + init_cases()
        + housekeeping_cases()
        + limits_stores_drivers()
    )


def run_case(case: Case, scratch: Path) -> Outcome:
    work = Path(tempfile.mkdtemp(dir=scratch))
    began = time.perf_counter()
    try:
        fresh(work, case.store)
        outside = snapshot(work / "outside", skip="")
        problems = case.body(work)
        if snapshot(work / "outside", skip="") != outside:
            problems.append("the file outside the runs dir changed")
        if (work / "pwned").exists():
            problems.append("code from a file ran")
    except Exception as exc:  # noqa: BLE001 - a harness failure is reported as the case's
        problems = [f"harness: {type(exc).__name__}: {exc}"]
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return Outcome(case, problems, time.perf_counter() - began)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--only", help="comma-separated categories")
    parser.add_argument("--match", help="only the cases whose name holds this text")
    parser.add_argument("--seed", type=int, default=10)
    parser.add_argument("--list", action="store_true")
    parser.add_argument("--json", type=Path, help="write every outcome here")
    args = parser.parse_args()
    cases = all_cases(args.seed)
    if args.only:
        cases = [c for c in cases if c.category in args.only.split(",")]
    if args.match:
        cases = [c for c in cases if args.match in c.name]
    if args.list:
        for c in cases:
            print(f"{c.category:12} {c.name}")
        print(len(cases), "cases")
        return 0
    scratch = Path(tempfile.mkdtemp(prefix="masklab-attack-"))
    make_reference(scratch / "reference")
    began = time.perf_counter()
    with ThreadPoolExecutor(args.jobs) as pool:
        outcomes = list(pool.map(lambda c: run_case(c, scratch), cases))
    shutil.rmtree(scratch, ignore_errors=True)
    table: dict[str, list[int]] = {}
    for o in outcomes:
        row = table.setdefault(o.case.category, [0, 0])
        row[0] += 1
        row[1] += not o.problems
        for p in o.problems:
            print(f"FAIL [{o.case.category}] {o.case.name}: {p}")
    print("\n| category | cases | passed | failed |\n|---|---|---|---|")
    for category, (n, passed) in table.items():
        print(f"| {category} | {n} | {passed} | {n - passed} |")
    total, passed = len(outcomes), sum(not o.problems for o in outcomes)
    print(f"| **all** | **{total}** | **{passed}** | **{total - passed}** |")
    print(f"\n{total} cases in {time.perf_counter() - began:.0f} s")
    if args.json:
        args.json.write_text(
            json.dumps(
                [
                    {
                        "category": o.case.category,
                        "case": o.case.name,
                        "problems": o.problems,
                        "seconds": round(o.seconds, 2),
                    }
                    for o in outcomes
                ],
                indent=1,
            )
        )
    return 0 if passed == total else 1


if __name__ == "__main__":
    sys.exit(main())
