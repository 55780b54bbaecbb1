"""The run store: `runs` (folders, atomic writes, locks; the only writer of runs/) and
`reload` (a finished run's spec, data and model, for evaluation)."""
