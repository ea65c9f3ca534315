"""sarreg: co-register SAR scenes with a learned R2D2-family keypoint network.

Public API (import from here): ``extract`` / ``extract_file`` and ``Features``; ``load_model``;
configuration dataclasses; errors. Later stages add ``register`` and ``batch``.
"""
__version__ = "0.1.0"

from sarreg.pipeline import Report, register  # noqa: E402,F401
from sarreg.batch import BatchSummary, SceneResult, batch  # noqa: E402,F401
