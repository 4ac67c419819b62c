"""The layers of the original's torch modules in Flax NNX, NHWC: Conv2d, BatchNorm2d, ReLU, ELU, Sequential.

Each keeps torch's semantics (initialisation, padding, BatchNorm's unbiased running variance) and torch's
leaf roles, so that a torch state dict maps onto them by renaming leaves only (see
:mod:`lwop_jax.checkpoints.torch_names`). On XLA:CPU, depthwise and 1x1 convolutions run as shifted
products and matmuls (faster there, same results); export and accelerators use plain convolutions.
"""

from __future__ import annotations

import functools
import math
import os

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

BN_EPSILON = 1e-5
BN_MOMENTUM = 0.1  # PyTorch semantics: running = (1 - m) * running + m * batch


def _uniform(rngs: nnx.Rngs, shape, bound):
    """U(-bound, bound) float32, seeded from the next ``params`` key.

    Drawn with NumPy: jax.random compiles once per distinct shape, which made building the network take
    seconds; the result is still fully determined by the ``nnx.Rngs`` seed.
    """
    key = rngs.params()
    if isinstance(key, jax.core.Tracer):  # abstract construction (nnx.eval_shape, jit): stay traceable
        return jax.random.uniform(key, shape, jnp.float32, -bound, bound)
    seed = np.asarray(jax.random.key_data(key)).ravel().tolist()
    return jnp.asarray(np.random.default_rng(seed).uniform(-bound, bound, shape).astype(np.float32))


# How depthwise and 1x1 convolutions are computed (same products; float32 summation order aside):
# 'plain': jax.lax.conv_general_dilated, as accelerators and the exported graph run them;
# 'shifted': depthwise as shifted products, 1x1 as one matmul (much faster on XLA:CPU, see the helpers);
# 'auto': 'shifted' on the CPU backend, 'plain' elsewhere, unless $LWOP_JAX_CONV_FORMULATION says otherwise.
CONV_FORMULATIONS = ('auto', 'plain', 'shifted')
FORMULATION_ENVIRONMENT = 'LWOP_JAX_CONV_FORMULATION'


def resolved_formulation(formulation: str = 'auto') -> str:
    """'plain' or 'shifted': ``formulation``, or for 'auto' the environment's choice, else the backend's."""
    if formulation == 'auto':
        formulation = os.environ.get(FORMULATION_ENVIRONMENT, 'auto') or 'auto'
    if formulation not in CONV_FORMULATIONS:
        raise ValueError(
            f'convolution formulation must be one of {CONV_FORMULATIONS}, not {formulation!r} '
            f'(${FORMULATION_ENVIRONMENT} or the conv_formulation config key)'
        )
    if formulation == 'auto':
        return 'shifted' if jax.default_backend() == 'cpu' else 'plain'
    return formulation


class Conv2d(nnx.Module):
    """torch.nn.Conv2d in NHWC: symmetric zero padding, dilation, groups; kernel is HWIO."""

    def __init__(
        self,
        in_channels,
        out_channels,
        kernel_size=3,
        *,
        stride=1,
        padding=1,
        dilation=1,
        groups=1,
        bias=True,
        dtype=None,
        rngs: nnx.Rngs,
    ):
        fan_in = in_channels // groups * kernel_size * kernel_size
        bound = 1.0 / math.sqrt(fan_in)
        shape = (kernel_size, kernel_size, in_channels // groups, out_channels)
        # PyTorch's default init for both: U(-1/sqrt(fan_in), 1/sqrt(fan_in)) (kaiming_uniform, a=sqrt(5)).
        self.kernel = nnx.Param(_uniform(rngs, shape, bound))
        self.bias = nnx.Param(_uniform(rngs, (out_channels,), bound)) if bias else None
        self.stride = stride
        self.padding = padding
        self.dilation = dilation
        self.groups = groups
        self.dtype = dtype
        self.layout = 'NHWC'  # export switches to 'NCHW' so the ONNX graph needs no transposes
        self.formulation = 'auto'  # see CONV_FORMULATIONS; PoseNet.set_conv_formulation sets it

    def __call__(self, x):
        kernel = self.kernel[...]
        if self.dtype is not None:
            x, kernel = x.astype(self.dtype), kernel.astype(self.dtype)
        # The shifted formulations are NHWC only; export (NCHW) always keeps plain convs.
        shifted = self.layout == 'NHWC' and resolved_formulation(self.formulation) == 'shifted'
        if shifted and self.groups > 1 and kernel.shape[2] == 1:
            y = _depthwise_as_shifts(x, kernel, self.stride, self.padding, self.dilation)
        elif shifted and self.groups == 1 and kernel.shape[:2] == (1, 1) and self.stride == 1 and self.padding == 0:
            y = _pointwise_as_matmul(x, kernel)
        else:
            y = jax.lax.conv_general_dilated(
                x,
                kernel,
                window_strides=(self.stride, self.stride),
                padding=((self.padding, self.padding), (self.padding, self.padding)),
                rhs_dilation=(self.dilation, self.dilation),
                feature_group_count=self.groups,
                dimension_numbers=(self.layout, 'HWIO', self.layout),
            )
        if self.bias is not None:
            y = y + _per_channel(self.bias[...].astype(y.dtype), self.layout)
        return y


def _conv_out_size(size, kernel_size, stride, padding, dilation):
    return (size + 2 * padding - dilation * (kernel_size - 1) - 1) // stride + 1


def _shifted(padded, i, j, out_h, out_w, stride):
    """The (N, out_h, out_w, C) window of ``padded`` that kernel tap (i, j) sees (offsets already dilated)."""
    n, _, _, c = padded.shape
    limit = (n, i + (out_h - 1) * stride + 1, j + (out_w - 1) * stride + 1, c)
    return jax.lax.slice(padded, (0, i, j, 0), limit, (1, stride, stride, 1))


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4))
def _depthwise_as_shifts(x, kernel, stride, padding, dilation):
    """Depthwise conv (NHWC, kernel (kh, kw, 1, C)) as a sum of kh*kw shifted, strided products.

    XLA:CPU runs grouped convolutions slowly (its forward and kernel gradient were 4-10x slower than
    this form for the backbone's shapes); the forward is bit-identical on CPU. The backward is written
    by hand (below): differentiating this forward made XLA materialise every shifted window of the
    input (kh*kw copies of the activation, each recomputing the BatchNorm/ReLU that produced it) to
    feed the kernel-gradient reductions, and fwd+bwd took ~1.75x longer.
    """
    n, h, w, c = x.shape
    kh, kw = kernel.shape[:2]
    out_h = _conv_out_size(h, kh, stride, padding, dilation)
    out_w = _conv_out_size(w, kw, stride, padding, dilation)
    padded = jnp.pad(x, ((0, 0), (padding, padding), (padding, padding), (0, 0)))
    out = None
    for i in range(kh):
        for j in range(kw):
            term = _shifted(padded, i * dilation, j * dilation, out_h, out_w, stride) * kernel[i, j, 0]
            out = term if out is None else out + term
    return out


def _depthwise_fwd(x, kernel, stride, padding, dilation):
    return _depthwise_as_shifts(x, kernel, stride, padding, dilation), (x, kernel)


def _depthwise_bwd(stride, padding, dilation, residuals, g):
    x, kernel = residuals
    n, h, w, c = x.shape
    kh, kw = kernel.shape[:2]
    out_h, out_w = g.shape[1:3]
    padded = jnp.pad(x, ((0, 0), (padding, padding), (padding, padding), (0, 0)))
    # Kernel gradient: tap (i, j) is sum over (n, y, x) of window_ij * g. The sum over the batch is
    # spelled out as adds, which XLA fuses with the window slicing into one loop per tap that reads
    # x and g once; only the batch-summed (out_h, out_w, C) products are reduced further.
    g32 = g.astype(jnp.float32)
    taps = []
    for i in range(kh):
        for j in range(kw):
            product = _shifted(padded, i * dilation, j * dilation, out_h, out_w, stride).astype(jnp.float32) * g32
            taps.append(sum((product[b] for b in range(1, n)), product[0]))
    kernel_grad = jnp.sum(jnp.stack(taps), axis=(1, 2)).reshape(kernel.shape).astype(kernel.dtype)
    # Input gradient: the transposed conv, i.e. the same shifted sum over g dilated by the stride and
    # padded so that dx[p] = sum_ij g_dilated[p + padding + dilation * (k - 1 - i)] * kernel[i].
    lo_h, lo_w = dilation * (kh - 1), dilation * (kw - 1)
    dilated = jax.lax.pad(
        g,
        jnp.zeros((), g.dtype),
        (
            (0, 0, 0),
            (lo_h, h + padding - (out_h - 1) * stride - 1, stride - 1),
            (lo_w, w + padding - (out_w - 1) * stride - 1, stride - 1),
            (0, 0, 0),
        ),
    )
    x_grad = None
    for i in range(kh):
        for j in range(kw):
            window = _shifted(dilated, padding + dilation * (kh - 1 - i), padding + dilation * (kw - 1 - j), h, w, 1)
            term = window * kernel[i, j, 0].astype(g.dtype)
            x_grad = term if x_grad is None else x_grad + term
    return x_grad.astype(x.dtype), kernel_grad


_depthwise_as_shifts.defvjp(_depthwise_fwd, _depthwise_bwd)


def _pointwise_as_matmul(x, kernel):
    """1x1 conv (stride 1, no padding; NHWC, kernel (1, 1, I, O)) as one (N*H*W, I) x (I, O) matmul.

    XLA:CPU lowers dots to its fast matmul kernels but runs 1x1 convolutions, and above all their
    gradients, through a slower convolution path: for the network's pointwise shapes the forward was
    up to 2x and forward+backward 2-4x slower as a conv. Flattening to 2-d keeps the gradient two
    plain matmuls too (a 4-d ``x @ kernel`` was slower). Same products, float32 summation order only.
    """
    n, h, w, c = x.shape
    return jnp.dot(x.reshape(n * h * w, c), kernel[0, 0]).reshape(n, h, w, kernel.shape[3])


def _per_channel(v, layout):
    """Broadcastable view of a per-channel vector for the given activation layout."""
    return v if layout == 'NHWC' else v.reshape(-1, 1, 1)


class BatchNorm2d(nnx.Module):
    """torch.nn.BatchNorm2d (eps 1e-5, momentum 0.1) over NHWC.

    In training mode it normalises with the biased batch variance and updates the running variance
    with the unbiased one, as PyTorch does (flax's BatchNorm uses the biased variance for both).
    """

    def __init__(
        self, num_features, *, epsilon=BN_EPSILON, momentum=BN_MOMENTUM, dtype=None, rngs: nnx.Rngs | None = None
    ):
        self.scale = nnx.Param(jnp.ones((num_features,), jnp.float32))
        self.bias = nnx.Param(jnp.zeros((num_features,), jnp.float32))
        self.mean = nnx.BatchStat(jnp.zeros((num_features,), jnp.float32))
        self.var = nnx.BatchStat(jnp.ones((num_features,), jnp.float32))
        self.epsilon = epsilon
        self.momentum = momentum
        self.use_running_average = False
        self.dtype = dtype
        self.layout = 'NHWC'

    def __call__(self, x):
        if self.use_running_average:
            mean, var = self.mean[...], self.var[...]
        else:
            x32 = x.astype(jnp.float32)
            axes = (0, 1, 2) if self.layout == 'NHWC' else (0, 2, 3)
            mean = jnp.mean(x32, axis=axes)
            var = jnp.mean(jnp.square(x32 - _per_channel(mean, self.layout)), axis=axes)
            n = x.size // mean.shape[0]  # samples per channel
            unbiased = var * (n / max(n - 1, 1))
            m = self.momentum
            self.mean[...] = (1 - m) * self.mean[...] + m * jax.lax.stop_gradient(mean)
            self.var[...] = (1 - m) * self.var[...] + m * jax.lax.stop_gradient(unbiased)
        inv = jax.lax.rsqrt(var + self.epsilon) * self.scale[...]
        shift = self.bias[...] - mean * inv
        y = x.astype(jnp.float32) * _per_channel(inv, self.layout) + _per_channel(shift, self.layout)
        return y.astype(self.dtype or x.dtype)


class ReLU(nnx.Module):
    def __call__(self, x):
        return jax.nn.relu(x)


class ELU(nnx.Module):
    def __call__(self, x):
        return jax.nn.elu(x)


class Sequential(nnx.List):
    """torch.nn.Sequential: children indexed 0..n-1, applied in order."""

    def __call__(self, x):
        for layer in self:
            x = layer(x)
        return x
