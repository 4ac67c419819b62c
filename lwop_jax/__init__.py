"""lwop_jax: Lightweight OpenPose in JAX/Flax.

``lwop_jax.PoseNet`` (the network), ``lwop_jax.load_model`` (a PoseNet from a torch .pth or an lwop_jax
orbax folder) and ``lwop_jax.PoseEstimator`` (image -> people) are imported lazily, so that the CPU
inference path (PoseEstimator on ONNX Runtime or OpenVINO) never loads jax or tensorflow.
"""

import importlib

__version__ = '0.2.0'

_LAZY = {
    'PoseNet': ('lwop_jax.model.posenet', 'PoseNet'),
    'load_model': ('lwop_jax.checkpoints.orbax_io', 'load_any'),
    'PoseEstimator': ('lwop_jax.inference.estimator', 'PoseEstimator'),
}

__all__ = sorted(_LAZY)


def __getattr__(name):
    if name in _LAZY:
        module, attribute = _LAZY[name]
        return getattr(importlib.import_module(module), attribute)
    raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
