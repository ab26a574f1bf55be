"""TF Serving client and local development server (installed as `tfgcrf.serving`).

`Client` calls the exported signatures over gRPC or REST; `tfgcrf serve` (`server.ModelServer`)
implements TF Serving's APIs locally. Importing this package does not load TensorFlow.
"""

from tfgcrf.serving.client import Client, SampleResult
from tfgcrf.serving.status import ServingError

__all__ = ["Client", "SampleResult", "ServingError"]
