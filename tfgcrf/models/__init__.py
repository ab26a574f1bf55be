"""The G-CRF VAE-MDN model: `GCRFBackbone` (architecture + inference) and `GCRFColorizer` (the
task that trains it in three stages), after keras-hub's Backbone / Task split."""

from tfgcrf.models.gcrf_backbone import GCRFBackbone
from tfgcrf.models.gcrf_colorizer import GCRFColorizer
from tfgcrf.models.grid import reveal_mask
from tfgcrf.models.points import points_to_grid

__all__ = ["GCRFBackbone", "GCRFColorizer", "points_to_grid", "reveal_mask"]
