"""sarreg: co-register SAR scenes with a learned R2D2-family keypoint network.

Public API::

    register(ref, moving, out, config) -> Report        one pair, coarse-to-fine (sarreg.pipeline)
    batch(...) -> BatchSummary                          a time series on Dask (sarreg.batch)
    extract_file(path, model, cfg) -> Features          tiled keypoint extraction (sarreg.extract)
    extract_array(model, unit, valid, cfg) -> Features  the same on an in-memory [0, 1] image
    match_mnn(desc1, desc2) -> Matches                  mutual nearest neighbours (sarreg.match)
    load_model(path | None) -> Model                    our checkpoints or original R2D2 ones
    ExtractConfig, PreprocessConfig, RegisterConfig     frozen option sets (sarreg.config)
    SarregError and subclasses                          typed errors (sarreg.errors)

Pixel convention everywhere: x = column, y = row, (0, 0) = centre of the top-left pixel.
"""
__version__ = "0.1.0"

from sarreg.config import ExtractConfig, PreprocessConfig, RegisterConfig  # noqa: E402
from sarreg.errors import (  # noqa: E402
    CRSError, InputError, LowQuality, OutputError, OverlapError, RegistrationFailed, SarregError, WeightsError,
)
from sarreg.extract import Features, extract_array, extract_file, extract_scene  # noqa: E402
from sarreg.match import Matches, match_mnn  # noqa: E402
from sarreg.model.weights import Model, load_model  # noqa: E402
from sarreg.pipeline import Report, register  # noqa: E402
from sarreg.batch import BatchSummary, SceneResult, batch  # noqa: E402

__all__ = [
    "__version__", "register", "Report", "batch", "BatchSummary", "SceneResult", "extract_file", "extract_array",
    "extract_scene", "Features", "match_mnn", "Matches", "load_model", "Model", "ExtractConfig",
    "PreprocessConfig", "RegisterConfig", "SarregError", "InputError", "CRSError", "OverlapError", "WeightsError",
    "OutputError", "RegistrationFailed", "LowQuality",
]
