"""Analysis of finished runs: `stats` (numbers in, numbers and words out), `compare`
(groups, comparisons, gates), `tables` (rows -> table | json | jsonl | csv | md) and
`plots` (PNG figures)."""
