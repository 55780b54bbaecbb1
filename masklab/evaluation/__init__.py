"""Evaluation: `metrics` (predictions, clean metrics), `grid` (the robustness grid),
`suites` (named corruption suites such as MNIST-C), `stored` (evaluating a stored run
and writing eval/<name>.json into its folder)."""
