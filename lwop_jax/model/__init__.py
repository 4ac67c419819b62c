"""The network: torch-compatible layers (layers), PoseNet (posenet), its variables by path (variables)."""

from lwop_jax.model.layers import BatchNorm2d, Conv2d, Sequential
from lwop_jax.model.posenet import PoseNet

__all__ = ['BatchNorm2d', 'Conv2d', 'PoseNet', 'Sequential']
