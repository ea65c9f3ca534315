"""Networks and checkpoint loading."""
from sarreg.model.r2d2 import Fast_Quad_L2Net_ConfCFS, Quad_L2Net_ConfCFS, build_network, fold_batchnorm
from sarreg.model.weights import Model, load_model, save_checkpoint, default_weights_path

__all__ = ["Fast_Quad_L2Net_ConfCFS", "Quad_L2Net_ConfCFS", "build_network", "fold_batchnorm",
           "Model", "load_model", "save_checkpoint", "default_weights_path"]
