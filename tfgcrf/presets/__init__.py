"""Bundled model presets (weights shipped inside the package; no download)."""
