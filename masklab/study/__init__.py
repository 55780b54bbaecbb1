"""Studies: from validated specs to finished runs. `runner` trains planned runs in this
process, one after another."""
