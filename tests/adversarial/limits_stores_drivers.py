"""Cases of issue 21 (part B) for the adversarial pass (attack.py), in four categories:

- text: inputs that are not regular files, huge texts, labels of two types, lone
  surrogates, many classes (refused in one line with no folder, or trained in bounded
  memory: every case runs under attack.py's 6 GB address-space limit);
- mlflow: tracking URIs that cannot work or stores that cannot be reached or written
  (one line naming the URI, the documented exit code, nothing made in the working
  folder), a full disk under the store, artifacts that must land beside the store;
- search: the search database damaged, not UTF-8, a folder, a link (to the database,
  its journal, its lock), locked by another process;
- drivers: `masklab train --jobs 2` and `--executor ray` with the driver SIGKILLed at
  one phase (tests/adversarial/driver_kill.py), then the same command again: every run
  done, no error kept, no run failed on the way.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml
from attack import IDS, TINY, Case, Result, bars, masklab, refused, store_state

HERE = Path(__file__).resolve().parent
KILL = HERE / "driver_kill.py"
TEXT_MODEL = {"arch": "bert", "dim": 16, "depth": 1, "heads": 2, "vocab_size": 200, "max_len": 16}
ROWS = [{"text": f"text number {i} about {'cats' if i % 2 else 'dogs'}", "label": "ab"[i % 2]} for i in range(20)]


def train_text(work: Path, dataset: str, timeout: float = 120) -> Result:
    spec = {"name": "t", "data": {"dataset": dataset}, "model": TEXT_MODEL, "train": {"epochs": 1, "batch_size": 64}}
    (work / "t.yaml").write_text(yaml.safe_dump(spec))
    return masklab(work, "train", "t.yaml", "-q", timeout=timeout)


def jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def class_folders(root: Path) -> Path:
    for label in ("neg", "pos"):
        (root / label).mkdir(parents=True)
        for i in range(4):
            (root / label / f"{i}.txt").write_text(f"{label} text number {i}")
    return root


# --- text ---------------------------------------------------------------------------------


def text_refused(name: str, build, says: str) -> Case:
    """Input refused in one line that says `says`, fast (a FIFO must not be waited on)."""

    def body(work: Path) -> list[str]:
        dataset = build(work)
        try:
            result = train_text(work, dataset, timeout=60)
        except subprocess.TimeoutExpired:
            return ["hung for 60 s"]
        problems = refused(work, result, (1,))
        if says not in result.err:
            problems.append(f"the error does not say {says!r}: {result.err.strip()[-200:]}")
        return problems

    return Case("text", name, body)


def text_trained(name: str, build) -> Case:
    """Input that trains, in bounded time and memory."""

    def body(work: Path) -> list[str]:
        result = train_text(work, build(work), timeout=300)
        problems = bars(result, (0,)) + store_state(work)
        return problems

    return Case("text", name, body)


def fifo_in_folder(work: Path) -> str:
    root = class_folders(work / "d")
    os.mkfifo(root / "pos" / "fifo.txt")
    return f"text:{root}"


def fifo_file(name: str):
    def build(work: Path) -> str:
        os.mkfifo(work / name)
        return f"text:{work / name}"

    return build


def rows_with(extra: list, at: int = 10):
    def build(work: Path) -> str:
        return f"text:{jsonl(work / 'd.jsonl', [*ROWS[:at], *extra, *ROWS[at:]])}"

    return build


def huge_txt(size: int):
    def build(work: Path) -> str:
        root = class_folders(work / "d")
        with open(root / "pos" / "huge.txt", "wb") as out:
            out.write(b"word " * (size // 5))
        return f"text:{root}"

    return build


def many_classes(k: int):
    def build(work: Path) -> str:
        rows = [{"text": f"text {i} of class {i % k}", "label": f"c{i % k}"} for i in range(2 * k)]
        return f"text:{jsonl(work / 'd.jsonl', rows)}"

    return build


def bad_folder_name(work: Path) -> str:
    root = class_folders(work / "d")
    os.rename(os.fsencode(root / "neg"), os.fsencode(root) + b"/n\xffg")
    return f"text:{root}"


def text_cases() -> list[Case]:
    def dir_txt(work: Path) -> str:
        root = class_folders(work / "d")
        (root / "pos" / "sub.txt").mkdir()
        return f"text:{root}"

    cases = [
        text_refused("a FIFO named .txt in a class folder", fifo_in_folder, "a FIFO (named pipe), not a regular file"),
        text_refused("fifo.jsonl", fifo_file("fifo.jsonl"), "a FIFO (named pipe), not a regular file"),
        text_refused("a FIFO without a suffix", fifo_file("fifo"), "a FIFO (named pipe), not a regular file"),
        text_refused("/dev/zero as the jsonl file", lambda w: "text:/dev/zero", "a character device"),
        text_refused("a folder named .txt", dir_txt, "a folder, not a regular file"),
        text_refused("labels 1 and '1'", rows_with([{"text": "one", "label": 1}], 0), "give every label as a string"),
        text_refused("labels '1' and 1", rows_with([{"text": "one", "label": 1}]), "give every label as a string"),
        text_refused("a lone surrogate in a text", rows_with(['{"text": "a\\ud800", "label": "a"}']), "lone surrogate"),
        text_refused("a lone surrogate in a label", rows_with(['{"text": "a", "label": "\\udfff"}']), "lone surrogate"),
        text_refused("a class folder named in bytes that are not UTF-8", bad_folder_name, "lone surrogate"),
        text_refused("a line of JSON nested 100,000 deep", rows_with(["[" * 100_000 + "]" * 100_000]), "nested"),
    ]
    for size, label in ((1 << 20, "1 MB"), (50 << 20, "50 MB")):
        big = {"text": "word " * (size // 5), "label": "a"}
        cases.append(text_trained(f"a {label} text in a JSONL line", rows_with([big])))
        cases.append(text_trained(f"a {label} .txt file", huge_txt(size)))
    cases.append(text_trained("10,000 classes", many_classes(10_000)))
    return cases


# --- mlflow -------------------------------------------------------------------------------


def closed_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def top_level(work: Path) -> list[str]:
    return sorted(p.name for p in work.iterdir() if p.name not in ("runs", "cache"))


def uri_case(name: str, uri: str, code: int, says: str) -> Case:
    def body(work: Path) -> list[str]:
        (work / "folder").mkdir()
        text = uri.replace("PORT", str(closed_port())).replace("WORK", str(work))
        before = top_level(work)
        result = masklab(work, "export", "tiny", "--to", f"mlflow:{text}", timeout=120)
        problems = bars(result, (code,))
        if f"Error: --to mlflow:{text[:30]}" not in result.err or says not in result.err:
            problems.append(f"the error does not name the URI and say {says!r}: {result.err.strip()[-200:]}")
        if top_level(work) != before:
            problems.append(f"made {sorted(set(top_level(work)) - set(before))} in the working folder")
        return problems

    return Case("mlflow", name, body, store=True)


def full_store_case(extra: int) -> Case:
    def body(work: Path) -> list[str]:
        first = masklab(work, "export", IDS["tiny-s0"], "--to", "mlflow:sqlite:///m.db")
        if first.rc:
            return [f"setup: {first.err.strip()[-200:]}"]
        limit = (work / "m.db").stat().st_size + extra
        result = masklab(work, "export", "tiny", "--to", "mlflow:sqlite:///m.db", limit_fsize=limit)
        problems = bars(result, (0, 1))
        if result.rc == 1 and "the store failed while exporting" not in result.err:
            problems.append(f"the error does not say the store failed: {result.err.strip()[-200:]}")
        again = masklab(work, "export", "tiny", "--to", "mlflow:sqlite:///m.db", "-f", "json")
        problems += bars(again, (0,), "export again")
        return problems

    return Case("mlflow", f"a full disk under the store (+{extra} bytes)", body, store=True)


def artifacts_case(work_uri: str) -> Case:
    def body(work: Path) -> list[str]:
        (work / "elsewhere").mkdir()
        uri = work_uri.replace("WORK", str(work))
        result = masklab(work, "export", "tiny", "--to", f"mlflow:{uri}")
        problems = bars(result, (0,))
        if (work / "mlruns").exists():
            problems.append("artifacts written to ./mlruns of the working folder")
        if not list((work / "elsewhere").glob("m-artifacts/tiny/*/artifacts/spec.yaml")):
            problems.append("no artifacts beside the store")
        return problems

    return Case("mlflow", f"artifacts of {work_uri}", body, store=True)


def mlflow_cases() -> list[Case]:
    refusals = [
        ("an unknown scheme", "bogus://x", 2, "unknown URI scheme 'bogus'"),
        ("a scheme with a driver MLflow lacks", "oracle+cx://h/db", 2, "unknown URI scheme 'oracle'"),
        ("file:///proc/x", "file:///proc/x", 2, "MLflow's file store"),
        ("a plain folder path", "WORK/plain", 2, "MLflow's file store"),
        ("a relative plain path", "mlruns", 2, "MLflow's file store"),
        ("a 300-character sqlite name", "sqlite:///" + "a" * 300 + ".db", 2, "too long"),
        ("a 300-character folder in the path", "sqlite:///" + "b" * 300 + "/m.db", 2, "too long"),
        ("sqlite naming a folder", "sqlite:///folder", 2, "is a folder"),
        ("sqlite in a missing folder", "sqlite:///no/such/m.db", 2, "does not exist"),
        ("in-memory sqlite", "sqlite://", 2, "in-memory"),
        ("sqlite:///:memory:", "sqlite:///:memory:", 2, "in-memory"),
        ("sqlite naming /dev/null", "sqlite:////dev/null", 2, "not a regular file"),
        ("a closed http port", "http://127.0.0.1:PORT", 1, "cannot reach"),
        ("a closed https port", "https://127.0.0.1:PORT", 1, "cannot reach"),
        ("a closed postgresql port", "postgresql://u@127.0.0.1:PORT/db", 1, "cannot reach"),
        ("a closed mysql port", "mysql://127.0.0.1:PORT/db", 1, "cannot reach"),
        ("an http URI without a host", "http:///x", 2, "no host"),
        ("an http URI with a bad port", "http://127.0.0.1:99999999", 2, "bad port"),
    ]
    cases = [uri_case(*r) for r in refusals]

    def not_a_database(work: Path) -> list[str]:
        (work / "m.db").write_bytes(b"text, not a database\n" * 300)
        result = masklab(work, "export", "tiny", "--to", "mlflow:sqlite:///m.db")
        return bars(result, (1,)) + ([] if "not an SQLite database" in result.err else ["not named"])

    cases.append(Case("mlflow", "sqlite naming a text file", not_a_database, store=True))
    cases += [full_store_case(extra) for extra in (0, 4096, 40_000)]
    cases += [artifacts_case("sqlite:///WORK/elsewhere/m.db"), artifacts_case("sqlite:///elsewhere/m.db")]
    return cases


# --- the search database ----------------------------------------------------------------------

SEARCH = {
    **{k: v for k, v in TINY.items() if k != "eval"},
    "name": "s",
    "train_ops": [{"op": "patch", "rate": 0.25, "size": 4}],
    "train": {**TINY["train"], "epochs": 1},
    "search": {"train_ops[0].rate": {"low": 0.0, "high": 0.8}},
}


def search(work: Path, trials: int = 1) -> Result:
    (work / "s.yaml").write_text(yaml.safe_dump(SEARCH))
    return masklab(work, "search", "s.yaml", "--trials", str(trials), "-q", timeout=300)


def search_case(name: str, damage, says: str, existing: bool = True) -> Case:
    def body(work: Path) -> list[str]:
        db = work / "runs" / "s.search.db"
        if existing:
            first = search(work)
            if first.rc:
                return [f"setup: {first.err.strip()[-200:]}"]
        (work / "runs").mkdir(exist_ok=True)
        with damage(work, db):
            result = search(work, 2)
        problems = bars(result, (1,)) + store_state(work)
        if says not in result.err:
            problems.append(f"the error does not say {says!r}: {result.err.strip()[-200:]}")
        return problems

    return Case("search", name, body)


class Damage:
    """A change to the search database for the length of one search."""

    def __init__(self, apply) -> None:
        self.apply = apply

    def __call__(self, work: Path, db: Path):
        self.work, self.db = work, db
        return self

    def __enter__(self):
        self.held = self.apply(self.work, self.db)

    def __exit__(self, *exc) -> None:
        if isinstance(self.held, sqlite3.Connection):
            self.held.close()


def garbage(work: Path, db: Path) -> None:
    db.write_bytes(os.urandom(16384))


def header_garbage(work: Path, db: Path) -> None:
    db.write_bytes(b"SQLite format 3\x00" + os.urandom(16384))


def truncated(work: Path, db: Path) -> None:
    os.truncate(db, 9000)


def not_utf8(work: Path, db: Path) -> None:
    with sqlite3.connect(db) as con:
        con.execute("UPDATE trial_user_attributes SET value_json = CAST(x'ff' || value_json AS TEXT)")
    con.close()


def folder(work: Path, db: Path) -> None:
    shutil.rmtree(db, ignore_errors=True)
    db.unlink(missing_ok=True)
    db.mkdir()


def link_to(name: str, target: str):
    def plant(work: Path, db: Path) -> None:
        path = db.with_name(name)
        path.unlink(missing_ok=True)
        path.symlink_to(work / "outside" / target)

    return plant


def locked(work: Path, db: Path) -> sqlite3.Connection:
    holder = sqlite3.connect(db, isolation_level=None, check_same_thread=False)
    holder.execute("BEGIN EXCLUSIVE")
    return holder


def search_cases() -> list[Case]:
    return [
        search_case("random bytes", Damage(garbage), "the search database is damaged"),
        search_case("an SQLite header, then garbage", Damage(header_garbage), "the search database is damaged"),
        search_case("truncated to 9,000 bytes", Damage(truncated), "the search database is damaged"),
        search_case("text that is not UTF-8", Damage(not_utf8), "the search database is damaged"),
        search_case("a folder", Damage(folder), "is a folder", existing=False),
        search_case("a link to a new file outside", Damage(link_to("s.search.db", "new.db")), "is a symbolic link"),
        search_case(
            "a link to a file outside",
            Damage(link_to("s.search.db", "precious.txt")),
            "is a symbolic link",
            existing=False,
        ),
        search_case("its lock a link", Damage(link_to("s.search.db.lock", "precious.txt")), "is a symbolic link"),
        search_case("its journal a link", Damage(link_to("s.search.db-journal", "j")), "is a symbolic link"),
        search_case("locked by another process", Damage(locked), "locked by another process"),
    ]


# --- killed drivers --------------------------------------------------------------------------

DRIVER_SPEC = {**TINY, "seeds": [0, 1], "train": {**TINY["train"], "epochs": 3}}


def cli_env(work: Path) -> dict:
    (work / "tmp").mkdir(exist_ok=True)
    return {
        **os.environ,
        "MASKLAB_RUNS": str(work / "runs"),
        "MASKLAB_CACHE": str(work / "cache"),
        "MASKLAB_WORKER_PIDS": str(work / "pids"),
        "TMPDIR": str(work / "tmp"),  # a killed Ray task's scratch folder stays: here, removed with the case
        "RAY_TMPDIR": os.environ.get("RAY_TMPDIR", tempfile.gettempdir()),  # Ray's sockets need a short path
    }


def gone(pids: list[int], wait_s: float = 120) -> list[int]:
    """The pids still running after `wait_s` (zombies have ended)."""
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        running = []
        for pid in pids:
            try:
                if Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":
                    running.append(pid)
            except OSError:
                pass
        if not running:
            return []
        time.sleep(0.2)
    return running


def driver_case(phase: str, executor: tuple[str, ...]) -> Case:
    def body(work: Path) -> list[str]:
        (work / "pids").mkdir()
        (work / "s.yaml").write_text(yaml.safe_dump(DRIVER_SPEC))
        run = lambda *command: subprocess.run(  # noqa: E731 - no RLIMIT_AS: Ray maps large areas
            [*command, "train", "s.yaml", "-q", *executor],
            cwd=work, env=cli_env(work), capture_output=True, text=True, timeout=600,
        )  # fmt: skip
        killed = run(sys.executable, str(KILL), phase)
        problems = [] if killed.returncode == -9 else [f"the driver was not killed: {killed.stderr[-200:]}"]
        left = gone([int(p.name) for p in (work / "pids").iterdir()])
        problems += [f"workers {left} still run"] if left else []
        for info in (work / "runs").glob("*/run.json") if (work / "runs").is_dir() else []:
            status = json.loads(info.read_text()).get("status")
            if status == "failed":
                problems.append(f"{info.parent.name} failed: {json.loads(info.read_text()).get('error')}")
        again = run(sys.executable, "-m", "masklab")
        problems += bars(Result(again.returncode, again.stdout, again.stderr), (0,), "the same command again")
        for info in (work / "runs").glob("*/run.json"):
            body_ = json.loads(info.read_text())
            if body_.get("status") != "done" or "error" in body_:
                problems.append(f"{info.parent.name} after the rerun: {body_.get('status')} {body_.get('error')}")
        hidden = [
            p.name for p in (work / "runs").iterdir() if p.name.startswith(".") and not p.name.startswith(".tmp-")
        ]
        return problems + [f"leftover {name} (the store sweeps only .tmp- folders)" for name in hidden]

    return Case("drivers", f"SIGKILL the driver of {' '.join(executor)} at {phase}", body)


def driver_cases() -> list[Case]:
    sys.path.insert(0, str(HERE))
    from driver_kill import DRIVER_PHASES, WORKER_PHASES

    cases = [driver_case(p, ("--jobs", "2")) for p in WORKER_PHASES]
    try:
        import ray  # noqa: F401
    except ImportError:
        return cases
    return cases + [driver_case(p, ("--executor", "ray")) for p in DRIVER_PHASES]


def cases() -> list[Case]:
    return text_cases() + mlflow_cases() + search_cases() + driver_cases()
