"""Sub-command modules of the `tfgcrf` CLI (see tfgcrf/cli.py)."""
