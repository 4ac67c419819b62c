"""lwop_jax: Lightweight OpenPose in JAX/Flax.

Top-level names are imported lazily, so that the CPU inference path (``lwop_jax.runtime`` with ONNX
Runtime, ``lwop_jax.decode``, ``lwop_jax.preprocess``) never loads jax or tensorflow.
"""
import importlib

_LAZY = {
    'PoseNet': 'lwop_jax.model',
    'PoseEstimator': 'lwop_jax.estimator',
}

__all__ = sorted(_LAZY)


def __getattr__(name):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
