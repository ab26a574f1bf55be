"""SavedModel export for TF Serving (installed as `tfgcrf.export`)."""
