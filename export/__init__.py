"""SavedModel export for TF Serving (installed as `tfgcrf.export`)."""

import os

# Where a SavedModel version keeps its TF Serving warm-up requests (written by the export, read by
# the development server: serving imports export, never the other way round).
WARMUP_FILE = os.path.join("assets.extra", "tf_serving_warmup_requests")
