"""A run folder -> TensorBoard event files in DIR/<run id>/.

Scalars per epoch (`loss/train`, `loss/val`, `accuracy/train`, `accuracy/val`, `lr`,
`realized/<op>`, ...), the summary metrics at the last epoch (`test/acc`, ...), the run's
figures as images (`figures/ops` is the mask/noise preview) and the resolved spec as
text. An export writes the folder from scratch into a temporary folder and renames it
into place; a marker file holds a fingerprint of what was written, so exporting an
unchanged run again writes nothing. Live tracking appends each epoch as it ends.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

from masklab.store.exporters import Synced, metric_name

MARKER = ".masklab-export.json"
RENAME = {"train_loss": "loss/train", "val_loss": "loss/val", "train_acc": "accuracy/train", "val_acc": "accuracy/val"}


def fingerprint(run) -> str:
    h = hashlib.sha256()
    for name in ("metrics.jsonl", "summary.json", "spec.yaml"):
        path = Path(run.path) / name
        h.update(path.read_bytes() if path.is_file() else b"-")
    for png in sorted(Path(run.path).glob("*.png")):
        h.update(f"{png.name}:{png.stat().st_size}".encode())
    h.update(str(run.info.get("tags")).encode() + str(run.status).encode())
    return h.hexdigest()[:16]


def scalars(row: dict) -> dict[str, float]:
    out = {}
    for key, value in row.items():
        if isinstance(value, (int, float)) and key != "epoch":
            out[RENAME.get(key, key)] = float(value)
    ops = row.get("ops") or []
    names = [o["op"] for o in ops]
    for i, o in enumerate(ops):
        out[f"realized/{o['op']}" if names.count(o["op"]) == 1 else f"realized/{i}.{o['op']}"] = o["realized"]
    return out


class TensorBoardExporter:
    kind = "tensorboard"

    def __init__(self, logdir: str) -> None:
        from torch.utils.tensorboard import SummaryWriter  # ImportError without the tensorboard package

        self._writer_class = SummaryWriter
        self.target = logdir
        self.root = Path(logdir)
        self._live: dict[str, tuple[object, int]] = {}  # run id -> (writer, last epoch written)

    def close(self) -> None:
        for writer, _ in self._live.values():
            writer.close()
        self._live.clear()

    def sync(self, run, live: bool = False) -> Synced:
        folder = self.root / run.id
        location = {"logdir": str(folder)}
        if live:
            return Synced("updated", self._append(run), location)
        self._close_live(run.id)
        stamp = fingerprint(run)
        marker = folder / MARKER
        if marker.is_file() and json.loads(marker.read_text()).get("fingerprint") == stamp:
            return Synced("up to date", 0, location)
        action = "updated" if folder.exists() else "created"
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{run.id}-", dir=self.root))
        try:
            written = self._write_all(run, tmp)
            (tmp / MARKER).write_text(json.dumps({"run_id": run.id, "fingerprint": stamp}) + "\n")
            if folder.exists():
                aside = self.root / f".old-{run.id}-{os.getpid()}-{time.monotonic_ns()}"
                os.rename(folder, aside)
                shutil.rmtree(aside, ignore_errors=True)
            os.rename(tmp, folder)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
        return Synced(action, written, location)

    def _append(self, run) -> int:
        """Live: at the first epoch (or a resume) the folder is rewritten from the run's
        rows so far; later epochs are appended to an open writer."""
        if run.id not in self._live:
            self.sync(run)  # everything so far, from scratch
            self._live[run.id] = (self._writer_class(log_dir=str(self.root / run.id)), len(run.metrics()))
            return 0
        writer, last = self._live[run.id]
        rows = [r for r in run.metrics() if r["epoch"] > last]
        for row in rows:
            for tag, value in scalars(row).items():
                writer.add_scalar(tag, value, row["epoch"])
        writer.flush()
        self._live[run.id] = (writer, max([last] + [r["epoch"] for r in rows]))
        return len(rows)

    def _close_live(self, rid: str) -> None:
        if rid in self._live:
            self._live.pop(rid)[0].close()

    def _write_all(self, run, folder: Path) -> int:
        writer = self._writer_class(log_dir=str(folder))
        written = 0
        rows = run.metrics()
        start = _seconds(run.info.get("started") or run.info.get("created"))
        elapsed = 0.0
        for row in rows:
            elapsed += float(row.get("seconds", 0.0))
            for tag, value in scalars(row).items():
                writer.add_scalar(tag, value, row["epoch"], walltime=start + elapsed if start else None)
                written += 1
        last = rows[-1]["epoch"] if rows else 0
        summary = run.summary
        for key, value in summary.items():
            if key.startswith("test_") and isinstance(value, (int, float)) and not isinstance(value, bool):
                writer.add_scalar(f"test/{key[5:]}", float(value), last)
                written += 1
        for key, value in summary.items():
            if key.startswith("acc@") or key == "robust_acc":
                writer.add_scalar(f"robustness/{metric_name(key)}", float(value), last)
                written += 1
        for png in sorted(Path(run.path).glob("*.png")):
            writer.add_image(f"figures/{png.stem}", _read_png(png), last, dataformats="HWC")
            written += 1
        spec_text = (Path(run.path) / "spec.yaml").read_text() if (Path(run.path) / "spec.yaml").is_file() else ""
        writer.add_text("spec", "    " + spec_text.replace("\n", "\n    "), 0)  # indented: Markdown code
        writer.close()
        return written + 1


def _read_png(path: Path):
    import numpy as np
    from matplotlib import image

    pixels = image.imread(path)  # (H, W, 3 or 4) floats in [0, 1]
    return np.ascontiguousarray(pixels[..., :3])


def _seconds(timestamp: str | None) -> float | None:
    import datetime

    return datetime.datetime.fromisoformat(timestamp).timestamp() if timestamp else None
