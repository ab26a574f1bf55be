"""The G-CRF VAE-MDN model and its helpers."""

from tfgcrf.models.gcrf_colorizer import GCRFColorizer, reveal_mask
from tfgcrf.models.points import points_to_grid

__all__ = ["GCRFColorizer", "points_to_grid", "reveal_mask"]
