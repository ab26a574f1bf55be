"""Experiment YAML files (installed as `tfgcrf.configs`)."""
