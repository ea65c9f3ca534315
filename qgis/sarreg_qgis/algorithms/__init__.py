"""The provider's algorithms, one per sarreg command."""
from .apply import ApplyAlgorithm
from .batch import BatchAlgorithm
from .extract import ExtractAlgorithm
from .register import RegisterAlgorithm

ALGORITHMS = (RegisterAlgorithm, ApplyAlgorithm, BatchAlgorithm, ExtractAlgorithm)
