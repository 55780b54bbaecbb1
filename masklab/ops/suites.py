"""Named corruption suites for `masklab eval --suite` and a spec's `eval.suite` (no torch here).

`mnist-c`: the corruptions of MNIST-C (Mu & Gilmer, 2019, google-research/mnist-c)
that can be written as batched tensor ops, each at the fixed severity MNIST-C's
corruption functions use. Left out, because they are per-image iterative algorithms
that do not map onto batched tensor ops without changing what they compute: glass_blur
(sequential random pixel swaps), fog (a diamond-square plasma fractal), spatter
(thresholded blurred liquid masks drawn with OpenCV) and canny_edges (hysteresis edge
tracking). `identity` is the clean test set, always reported.

Fidelity to MNIST-C's corruptions.py, op by op where it was checked against the reference:
motion blur is ImageMagick's MotionBlurImage kernel (21 taps at integer offsets, Gaussian
weights, edge pixels replicated; tests/test_eval.py compares it with a transcription of
the C code), kept as floats where MNIST-C stores 8-bit PNGs; impulse noise draws every
pixel as scikit-image's random_noise(mode="s&p") does (hit with probability 0.17, then
salt or pepper with probability 1/2), not an exact count; shot noise is an exact Poisson
draw. The draws come from masklab's keyed hash, not NumPy's generator, so the corrupted
images match MNIST-C's in distribution, not pixel for pixel. The warps, brightness,
stripe and line corruptions are written from corruptions.py and were not compared with
its output here.
"""

from __future__ import annotations

from masklab.errors import UsageError
from masklab.ops import registry

MNIST_C = [
    {"op": "shot", "c": 3.0},  # severity 5
    {"op": "salt_pepper", "amount": 0.17, "count": "bernoulli"},  # impulse_noise, severity 4
    {"op": "motion_blur", "radius": 10, "sigma": 3.0, "angle": [-45.0, 45.0]},  # severity 1
    {"op": "shear", "degrees": 22.92},  # 0.4 rad, severity 2
    {"op": "scale", "factor": 0.7},  # severity 3
    {"op": "rotate", "degrees": 22.92},  # 0.4 rad, severity 2
    {"op": "brightness", "delta": 0.5},  # severity 5
    {"op": "translate", "pixels": 3.0},  # severity 3
    {"op": "inverse_stripe", "fraction": 0.25},  # stripe: columns 0-6 and 21-27 of 28
    {"op": "dotted_line"},
    {"op": "zigzag"},
]

LEFT_OUT = {
    "glass_blur": "sequential random pixel swaps",
    "fog": "diamond-square plasma fractal",
    "spatter": "thresholded blurred liquid masks",
    "canny_edges": "hysteresis edge tracking",
}


SUITES = {"mnist-c": MNIST_C}  # the table: suite name -> its corruptions (a spec's eval.suite, eval --suite)


def check_suite(name: str | None, option: str = "--suite") -> None:
    """A suite name the table knows (None: no suite), else a UsageError listing them."""
    if name is not None and name not in SUITES:
        known = ", ".join(SUITES)
        raise UsageError(f"{option} {name}: unknown suite; the suite masklab knows is {known}")


def suite_ops(name: str, shape: tuple[int, int, int]) -> list[dict]:
    """The suite's corruptions as eval ops, each tagged with the suite's name."""
    check_suite(name)
    return [{**registry.validate(op, f"{name}[{i}]", grid=True), "suite": name} for i, op in enumerate(SUITES[name])]
