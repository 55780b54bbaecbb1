"""Text datasets and the tokenizer: readers, one-line errors, fixed splits, the cache,
and text runs from the command line (pretraining, fine-tuning, eval, refusals)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from masklab.data import fortunes, tokenize
from masklab.data.dataset import Lookup
from masklab.data.fortunes import FORTUNE_CATEGORIES
from masklab.data.registry import load_corpus
from masklab.errors import DataError

from conftest import cli, run_dirs

FORTUNES = Path("/usr/share/games/fortunes")
needs_fortunes = pytest.mark.skipif(
    not all((FORTUNES / c).is_file() for c in FORTUNE_CATEGORIES),
    reason="Debian's fortunes package is not installed (apt-get install fortunes)",
)


def jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


ROWS = [{"text": f"text number {i} about {'cats' if i % 2 else 'dogs'}", "label": "ab"[i % 2]} for i in range(20)]


@pytest.mark.parametrize(
    "lines, message",
    [
        ([], "no texts (the file is empty)"),
        ([*ROWS[:3], "{not json"], ":4: not valid JSON"),
        ([*ROWS[:3], {"text": "x"}], ":4: missing field 'label'"),
        ([*ROWS[:3], {"label": "a"}], ":4: missing field 'text'"),
        ([*ROWS[:3], {"text": "  ", "label": "a"}], ':4: "text" must be a non-empty string'),
        ([*ROWS[:3], {"text": "x", "label": [1]}], ':4: "label" must be a non-empty string or an integer'),
        ([*ROWS[:3], "[1, 2]"], ":4: expected a JSON object"),
        ([{"text": f"t{i}", "label": "only"} for i in range(5)], "one class only ('only')"),
        ([*ROWS[:6], {"text": "lonely", "label": "c"}], "class 'c' has 1 text; each class needs at least 2"),
        ([{**r, "split": "dev"} for r in ROWS], '"split" must be "train" or "test"'),
        ([{**r, "split": "train"} for r in ROWS], "the other split is empty"),
        ([{**ROWS[0], "split": "train"}, *ROWS[1:]], "some texts name a split and some do not"),
    ],
)
def test_jsonl_errors_are_one_line(tmp_path, lines, message):
    path = jsonl(tmp_path / "d.jsonl", lines)
    with pytest.raises(DataError, match=None) as err:
        load_corpus(f"text:{path}")
    assert message in str(err.value) and "\n" not in str(err.value)


def test_jsonl_not_utf8_and_missing(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_bytes(b'{"text": "caf\xe9", "label": "a"}\n')
    with pytest.raises(DataError, match="not UTF-8 text \\(bad byte at offset 13\\)"):
        load_corpus(f"text:{path}")
    with pytest.raises(DataError, match="no such file"):
        load_corpus(f"text:{tmp_path / 'nope.jsonl'}")


def test_jsonl_split_is_fixed_and_stratified(tmp_path):
    path = jsonl(tmp_path / "d.jsonl", ROWS + [{"text": f"more {i}", "label": 7} for i in range(0)])
    a, b = load_corpus(f"text:{path}"), load_corpus(f"text:{path}")
    assert a.classes == ["a", "b"] and len(a.train_texts) == 16 and len(a.test_texts) == 4
    assert a.train_texts == b.train_texts and np.bincount(a.test_y).tolist() == [2, 2]
    given = jsonl(tmp_path / "s.jsonl", [{**r, "split": "test" if i < 4 else "train"} for i, r in enumerate(ROWS)])
    c = load_corpus(f"text:{given}")
    assert c.test_texts == [r["text"] for r in ROWS[:4]]


def test_integer_labels_sort_numerically(tmp_path):
    path = jsonl(tmp_path / "d.jsonl", [{"text": f"t{i}", "label": [10, 2][i % 2]} for i in range(10)])
    assert load_corpus(f"text:{path}").classes == ["2", "10"]


def write_class_folders(root: Path, classes: dict[str, list[str]]) -> Path:
    for name, texts in classes.items():
        (root / name).mkdir(parents=True, exist_ok=True)
        for i, t in enumerate(texts):
            (root / name / f"{i}.txt").write_text(t)
    return root


def test_folder_of_class_folders(tmp_path):
    root = write_class_folders(tmp_path / "d", {"neg": [f"bad {i}" for i in range(5)], "pos": ["good"] * 5})
    corpus = load_corpus(f"text:{root}")
    assert corpus.classes == ["neg", "pos"] and len(corpus.train_texts) == 8
    split = tmp_path / "s"
    write_class_folders(split / "train", {"neg": ["a", "b"], "pos": ["c", "d"]})
    write_class_folders(split / "test", {"neg": ["e"], "pos": ["f"]})
    corpus = load_corpus(f"text:{split}")
    assert corpus.test_texts == ["e", "f"] and corpus.train_texts == ["a", "b", "c", "d"]


@pytest.mark.parametrize(
    "build, message",
    [
        (lambda r: None, "not a folder"),
        (lambda r: r.mkdir(), "no class sub-folders"),
        (lambda r: write_class_folders(r, {"a": ["x", "y"], "b": ["", "z"]}), "0.txt: empty text"),
        (lambda r: (r / "a").mkdir(parents=True), "a: no .txt files"),
        (lambda r: write_class_folders(r, {"a": ["x", "y", "z"]}), "one class only ('a')"),
        (
            lambda r: (
                write_class_folders(r, {"a": ["x", "y"], "b": ["z", "w"]}),
                (r / "b" / "2.txt").write_bytes(b"\xff"),
            ),
            "2.txt: not UTF-8 text",
        ),
        (
            lambda r: (
                write_class_folders(r / "train", {"a": ["x"], "b": ["y"]}),
                write_class_folders(r / "test", {"c": ["z"]}),
            ),
            "class 'c' has no training texts",
        ),
    ],
)
def test_folder_errors_are_one_line(tmp_path, build, message):
    root = tmp_path / "d"
    build(root)
    with pytest.raises(DataError) as err:
        load_corpus(f"text:{root}")
    assert message in str(err.value) and "\n" not in str(err.value)


def fake_fortunes(root: Path, per: int = 6) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for c in FORTUNE_CATEGORIES:
        entries = [f"A saying about {c}, number {i}.\n\t\t-- Someone" for i in range(per)] + ["Shared by all."]
        (root / c).write_text("\n%\n".join(entries) + "\n%\n")
        (root / f"{c}.dat").write_bytes(b"\x00\x01binary")  # index files are not read
    return root


def test_fortunes_from_a_folder(tmp_path):
    corpus = load_corpus_fortunes(fake_fortunes(tmp_path / "f"))
    assert corpus.classes == sorted(FORTUNE_CATEGORIES)
    assert len(corpus.train_texts) + len(corpus.test_texts) == 8 * 6  # the shared entry is left out
    assert "Shared by all." not in corpus.train_texts + corpus.test_texts
    assert len(corpus.test_texts) == 10 and np.bincount(corpus.train_y).min() >= 4  # 20%, stratified
    (tmp_path / "f" / "politics").unlink()
    with pytest.raises(DataError, match="no fortune file 'politics'"):
        load_corpus_fortunes(tmp_path / "f")


def load_corpus_fortunes(root: Path):
    return fortunes.load("fortunes", Lookup(str(root)))


def test_fortune_entries_split_on_percent_lines():
    assert fortunes.fortune_entries("one\n%\ntwo\nlines\n%\n\n%\nthree") == ["one", "two\nlines", "three"]


@needs_fortunes
def test_the_real_fortunes_corpus():
    corpus = load_corpus("fortunes")
    assert corpus.classes == sorted(FORTUNE_CATEGORIES)
    assert (len(corpus.train_texts), len(corpus.test_texts)) == (5392, 1348)
    assert np.bincount(corpus.train_y).tolist() == [840, 962, 463, 996, 562, 498, 569, 502]


def test_tokenizer_specials_cache_and_encoding(workdir, monkeypatch):
    corpus = load_corpus("kjv-mini").limit(200, 50)
    train, test, info = tokenize.tokenize_corpus(corpus, 300, True, 24)
    assert train.shape == (200, 24) and test.shape == (50, 24) and train.dtype == np.int64
    assert (train[:, 0] == 2).all() and info.vocab_size == 300
    ends = (train != 0).sum(1) - 1
    assert (train[np.arange(200), ends] == 3).all()  # [SEP] closes every text, cut or not
    assert info.truncated > 0 and Path(info.path).is_file()
    assert info.continuation[:5].all() and not info.continuation[5:].all()  # specials, then pieces
    monkeypatch.setattr(tokenize, "_new_tokenizer", lambda *a: pytest.fail("trained again instead of cached"))
    again = tokenize.tokenize_corpus(corpus, 300, True, 24)
    assert np.array_equal(again[0], train) and again[2].key == info.key
    assert tokenize.cache_key(corpus.train_texts, 301, True, "x") != tokenize.cache_key(
        corpus.train_texts, 300, True, "x"
    )


def test_tokenizer_training_is_deterministic_across_processes(workdir):
    """The library's WordPiece trainer numbers pieces in hash-map order, which differs per process."""
    code = (
        "from masklab.data.registry import load_corpus; from masklab.data.tokenize import tokenize_corpus;"
        "print(tokenize_corpus(load_corpus('kjv-mini').limit(400, 50), 500, True, 32)[2].path)"
    )
    env = {"MASKLAB_CACHE": str(workdir / "other"), "PATH": "/usr/bin:/bin", "PYTHONHASHSEED": "1"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    here = tokenize.tokenize_corpus(load_corpus("kjv-mini").limit(400, 50), 500, True, 32)[2].path
    assert Path(out.stdout.strip()) != Path(here)
    assert Path(out.stdout.strip()).read_bytes() == Path(here).read_bytes()


def test_missing_tokenizers_library_is_a_one_line_error(workdir, monkeypatch):
    monkeypatch.setitem(sys.modules, "tokenizers", None)
    with pytest.raises(DataError, match=r"need the tokenizers library; pip install tokenizers"):
        tokenize.tokenize_corpus(load_corpus("kjv-mini").limit(100, 20), 300, True, 16)


# --- from the command line ---------------------------------------------------------------------

TEXT = {
    "name": "pre",
    "seeds": [0],
    "data": {"dataset": "kjv-mini", "train_limit": 300, "test_limit": 100, "val_fraction": 0.2},
    "model": {"arch": "bert", "dim": 32, "depth": 1, "heads": 2, "vocab_size": 400, "max_len": 32},
    "train": {"epochs": 2, "batch_size": 32, "lr": 0.003},
}


def text_spec(**changes) -> dict:
    body = json.loads(json.dumps(TEXT))
    for key, value in changes.items():
        body[key] = {**body[key], **value} if isinstance(body.get(key), dict) and key != "model" else value
    return body


def test_pretrain_then_finetune_then_eval_from_the_command_line(workdir, write_spec):
    pre = text_spec(
        train={"objective": "masked-modeling"},
        train_ops=[{"op": "tokens", "rate": 0.15, "action": "mlm", "unit": "word", "mode": "static", "copies": 2}],
    )
    out = cli("train", write_spec(pre, "pre.yaml"), "-q", "-f", "json")
    assert out.exit_code == 0, out.stderr
    (pre_dir,) = run_dirs(workdir)
    rows = [json.loads(x) for x in (pre_dir / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 2 and {"val_loss", "val_mlm_acc"} <= set(rows[0]) and "train_acc" not in rows[0]
    assert abs(rows[0]["ops"][0]["realized"] - 0.15) < 0.02
    summary = json.loads((pre_dir / "summary.json").read_text())
    assert 0 <= summary["test_mlm_acc"] <= 1 and summary["test_loss"] > 0
    info = json.loads((pre_dir / "run.json").read_text())
    assert info["data"]["tokenizer"]["vocab_size"] == 400 and info["data"]["shape"] == [32]

    ft = text_spec(
        name="ft",
        train={"init_from": "pre", "epochs": 1},
        train_ops=[{"op": "tokens", "rate": 0.1, "action": "mask"}, {"op": "attention", "rate": 0.1}],
        eval={"ops": [{"op": "tokens", "rate": [0.2, 0.5], "action": "mask"}]},
    )
    out = cli("train", write_spec(ft, "ft.yaml"), "-q", "-f", "json")
    assert out.exit_code == 0, out.stderr
    ft_dir = next(d for d in run_dirs(workdir) if d.name.startswith("ft-"))
    info = json.loads((ft_dir / "run.json").read_text())
    assert (
        info["init_from"]["run"] == pre_dir.name and info["init_from"]["tensors_loaded"] == 4 + 12 + 2
    )  # embeddings, one block, final norm
    summary = json.loads((ft_dir / "summary.json").read_text())
    assert set(summary["per_class_recall"]) == {"epistles", "gospels", "law", "prophets", "wisdom"}
    assert [c["name"] for c in summary["robustness"]] == [
        "tokens(rate=0.2)",
        "tokens(rate=0.5)",
    ]
    result = cli("eval", ft_dir.name, "--op", "tokens:rate=0.3,action=mlm,unit=span", "-f", "json")
    assert result.exit_code == 0, result.stderr
    refused = cli("eval", ft_dir.name, "--op", "gaussian:sigma=0.1")
    assert refused.exit_code == 2
    assert (
        refused.stderr.strip()
        == "Error: --op gaussian: does not apply to a text run; use tokens, e.g. --op tokens:rate=0.1,0.3"
    )
    suite = cli("eval", ft_dir.name, "--suite", "mnist-c")
    assert suite.exit_code == 2 and "corrupts images" in suite.stderr


def test_finetuning_needs_the_pretraining_vocabulary(workdir, write_spec):
    pre = text_spec(
        train={"objective": "masked-modeling", "epochs": 1}, train_ops=[{"op": "tokens", "rate": 0.15, "action": "mlm"}]
    )
    assert cli("train", write_spec(pre, "pre.yaml"), "-q").exit_code == 0
    other = text_spec(name="ft", data={"train_limit": 250}, train={"init_from": "pre", "epochs": 1})
    out = cli("train", write_spec(other, "ft.yaml"), "-q")
    assert out.exit_code == 2 and "was trained with tokenizer" in out.stderr
    assert [d.name[:3] for d in run_dirs(workdir)] == ["pre"]


@pytest.mark.parametrize(
    "change, message",
    [
        ({"model": {"arch": "cnn"}}, "model.arch: kjv-mini is a text dataset; use model.arch bert, got cnn"),
        ({"data": {"dataset": "mnist-mini"}}, "model.arch: bert reads text; mnist-mini is an image dataset"),
        ({"train_ops": [{"op": "patch", "rate": 0.2}]}, "train_ops[0].op: patch works on images"),
        (
            {"eval": {"ops": [{"op": "gaussian", "sigma": 0.1}]}},
            "eval.ops[0].op: gaussian does not apply to a text dataset",
        ),
        ({"eval": {"suite": "mnist-c"}}, "eval.suite: mnist-c corrupts images"),
        (
            {"train": {"objective": "masked-modeling"}, "train_ops": [{"op": "tokens", "rate": 0.2, "action": "drop"}]},
            "use action mlm or mask, not drop",
        ),
        (
            {"train_ops": [{"op": "tokens", "rate": 0.2, "unit": "span", "count": "bernoulli"}]},
            "unit span draws exact counts",
        ),
    ],
)
def test_text_spec_errors(workdir, write_spec, change, message):
    out = cli("train", write_spec(text_spec(**change)))
    assert out.exit_code == 2 and message in out.stderr, out.stderr
    assert run_dirs(workdir) == []


def test_image_specs_refuse_text_only_settings(workdir, write_spec):
    from conftest import tiny_spec

    vit = {"arch": "vit", "patch": 4, "dim": 16, "depth": 1, "heads": 2}
    spec = tiny_spec(model=vit, train_ops=[{"op": "tokens", "rate": 0.2, "unit": "word"}])
    out = cli("train", write_spec(spec))
    assert (
        out.exit_code == 2 and "train_ops[0].unit: needs a text dataset; mnist-mini is an image dataset" in out.stderr
    )
    spec = tiny_spec(eval={"ops": [{"op": "tokens", "rate": 0.2}]})
    out = cli("train", write_spec(spec))
    assert out.exit_code == 2 and "eval.ops[0].op: tokens does not apply to an image dataset" in out.stderr
    out = cli("mask", "--dataset", "kjv-mini", "--op", "patch", "--rate", "0.5", "--out", "x.npz")
    assert out.exit_code == 2 and "kjv-mini is a text dataset" in out.stderr


@needs_fortunes
def test_fortunes_pretraining_and_finetuning_from_the_command_line(workdir, write_spec):
    data = {"dataset": "fortunes", "train_limit": 400, "test_limit": 160, "val_fraction": 0.1}
    pre = text_spec(
        data=data,
        train={"objective": "masked-modeling", "epochs": 1},
        train_ops=[{"op": "tokens", "rate": 0.15, "action": "mlm", "mode": "dynamic"}],
    )
    assert cli("train", write_spec(pre, "pre.yaml"), "-q").exit_code == 0
    ft = text_spec(name="ft", data=data, train={"init_from": "pre", "epochs": 1})
    out = cli("train", write_spec(ft, "ft.yaml"), "-q", "-f", "json")
    assert out.exit_code == 0, out.stderr
    (row,) = json.loads(out.stdout)["rows"]
    assert 0 <= row["test_acc"] <= 1
    ft_dir = next(d for d in run_dirs(workdir) if d.name.startswith("ft-"))
    summary = json.loads((ft_dir / "summary.json").read_text())
    assert sorted(summary["per_class_recall"]) == sorted(FORTUNE_CATEGORIES)
