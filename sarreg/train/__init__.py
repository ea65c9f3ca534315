"""Self-supervised training of the SAR keypoint network (pairs, losses, loop)."""
from sarreg.train.loop import TrainConfig, train
from sarreg.train.pairs import PairConfig, Source, make_pair, sample_pair

__all__ = ["TrainConfig", "train", "PairConfig", "Source", "make_pair", "sample_pair"]
