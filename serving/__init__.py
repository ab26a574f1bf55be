"""TF Serving client and local development server (installed as `tfgcrf.serving`)."""
