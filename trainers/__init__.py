"""Training entry points (installed as `tfgcrf.trainers`)."""
