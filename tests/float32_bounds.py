"""Bounds, derived rather than measured, on how far two float32 computations of the same network may differ.

Two formulations of one network (other kernels, another summation order, another CPU) differ by rounding
only. A float32 sum of n products is off by about sqrt(n) u relative, u = 2^-24 (rounding errors of random
sign: Higham, Accuracy and Stability of Numerical Algorithms, section 2.8). In eval mode BatchNorm is a
fixed affine map (near the identity at initialisation) and ReLU is 1-Lipschitz, so along a path of L
convolutions these errors add: at most L sqrt(n_max) u of an output's scale for each computation, twice
that between two. L is bounded by the network's number of convolutions and n_max is its largest fan-in.

Training-mode BatchNorm over a small batch has no such bound: it divides by batch standard deviations that
can be tiny at random initialisation, and amplifies rounding by a factor that depends on the data.
"""

import math

UNIT_ROUNDOFF = 2.0**-24


def conv_chain(model) -> tuple[int, int]:
    """(number of convolutions, largest fan-in) of a PoseNet."""
    from flax import nnx

    from lwop_jax.model.layers import Conv2d

    convs = [module for _, module in nnx.iter_modules(model) if isinstance(module, Conv2d)]
    return len(convs), max(math.prod(conv.kernel.shape[:3]) for conv in convs)


def relative_difference_bound(model) -> float:
    """How far two float32 evaluations of ``model`` in eval mode may differ, relative to the output's scale."""
    depth, fan_in = conv_chain(model)
    return 2 * depth * math.sqrt(fan_in) * UNIT_ROUNDOFF
