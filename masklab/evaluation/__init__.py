"""Evaluation: `metrics` (predictions, clean metrics), `robustness` (the corruption
grid a run is tested on: cells, their names and summary), `predictions` (stored per-example
results), `stored` (evaluating a stored run and writing eval/<name>.json into its folder).
Named suites such as MNIST-C are op lists in ops/suites.py."""
