"""Version strings and paths of the embedded world, importable without numpy or torch.

Registration (``__init__.py``) and the availability check read these constants, so listing
components never imports the heavy modules.
"""

from __future__ import annotations

from pathlib import Path

#: Version of the synthetic world generator: renderer, degradations, calibration constants and
#: split protocol. Bump it whenever any rendered byte, severity or comparison can change; it is
#: part of ``Dataset.version`` and of every manifest digest, so caches never mix two worlds.
GENERATOR_VERSION = "1.1.0"

#: Version of the embedded FR model (architecture + preprocessing). The weights have their own
#: digest; this changes only when the network definition changes.
MODEL_VERSION = "1.0.0"

#: The FR weights shipped with fiqabench.
DEFAULT_WEIGHTS = Path(__file__).resolve().parent / "weights" / "synthetic-fr.safetensors"

#: How users re-create the weights (quoted in error messages).
TRAIN_COMMAND = "fiqabench train synthetic-fr --output PATH"
