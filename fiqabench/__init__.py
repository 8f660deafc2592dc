"""fiqabench: benchmark any FIQA method against any FR model on any face benchmark."""

from __future__ import annotations

import pluggy

from fiqabench.api import (
    Comparisons,
    Dataset,
    FaceRecognitionModel,
    FIQAMethod,
    FRCapabilities,
    InputSpace,
    Option,
    SampleBatch,
    SampleTable,
    Templates,
)
from fiqabench.errors import FiqabenchError

__version__ = "0.1.0"

#: Decorator for hook implementations in plugins.
hookimpl = pluggy.HookimplMarker("fiqabench")

__all__ = [
    "Comparisons",
    "Dataset",
    "FaceRecognitionModel",
    "FIQAMethod",
    "FRCapabilities",
    "FiqabenchError",
    "InputSpace",
    "Option",
    "SampleBatch",
    "SampleTable",
    "Templates",
    "__version__",
    "hookimpl",
]
