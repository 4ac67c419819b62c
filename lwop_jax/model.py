"""PoseNet: Lightweight OpenPose (``PoseEstimationWithMobileNet``) in Flax NNX.

The module tree mirrors the PyTorch state-dict keys one to one: ``model.7.0`` is the depthwise conv of
backbone block 7, ``cpm.trunk.1.2`` the pointwise conv of the second CPM block,
``refinement_stages.0.trunk.4.trunk.1.1`` a BatchNorm. Torch ``nn.Sequential`` containers are
:class:`Sequential` lists whose activations occupy their own index, exactly as in torch, so converting a
checkpoint is a rename of the leaf names only (``weight`` -> ``kernel``/``scale``, ``running_mean`` ->
``mean``, ...). See :mod:`lwop_jax.weights`.

Layout is NHWC inside; inputs are BGR images normalised like the original, ``(img - 128) / 256``.
"""
from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from lwop_jax import skeleton

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


class Conv2d(nnx.Module):
    """torch.nn.Conv2d in NHWC: symmetric zero padding, dilation, groups; kernel is HWIO."""

    def __init__(self, in_channels, out_channels, kernel_size=3, *, stride=1, padding=1, dilation=1,
                 groups=1, bias=True, dtype=None, rngs: nnx.Rngs):
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

    def __call__(self, x):
        kernel = self.kernel[...]
        if self.dtype is not None:
            x, kernel = x.astype(self.dtype), kernel.astype(self.dtype)
        # CPU-only formulations (see the helpers); export (NCHW) and accelerators keep plain convs.
        cpu_nhwc = self.layout == 'NHWC' and jax.default_backend() == 'cpu'
        if cpu_nhwc and self.groups > 1 and kernel.shape[2] == 1:
            y = _depthwise_as_shifts(x, kernel, self.stride, self.padding, self.dilation)
        elif cpu_nhwc and self.groups == 1 and kernel.shape[:2] == (1, 1) and self.stride == 1 and self.padding == 0:
            y = _pointwise_as_matmul(x, kernel)
        else:
            y = jax.lax.conv_general_dilated(
                x, kernel, window_strides=(self.stride, self.stride),
                padding=((self.padding, self.padding), (self.padding, self.padding)),
                rhs_dilation=(self.dilation, self.dilation), feature_group_count=self.groups,
                dimension_numbers=(self.layout, 'HWIO', self.layout))
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
    dilated = jax.lax.pad(g, jnp.zeros((), g.dtype),
                          ((0, 0, 0), (lo_h, h + padding - (out_h - 1) * stride - 1, stride - 1),
                           (lo_w, w + padding - (out_w - 1) * stride - 1, stride - 1), (0, 0, 0)))
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

    def __init__(self, num_features, *, epsilon=BN_EPSILON, momentum=BN_MOMENTUM, dtype=None,
                 rngs: nnx.Rngs | None = None):
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


# The building blocks of the original modules/conv.py, with the same child indices.

def conv(in_ch, out_ch, kernel_size=3, padding=1, bn=True, dilation=1, stride=1, relu=True, bias=True,
         *, dtype=None, rngs):
    layers = [Conv2d(in_ch, out_ch, kernel_size, stride=stride, padding=padding, dilation=dilation,
                     bias=bias, dtype=dtype, rngs=rngs)]
    if bn:
        layers.append(BatchNorm2d(out_ch, dtype=dtype))
    if relu:
        layers.append(ReLU())
    return Sequential(layers)


def conv_dw(in_ch, out_ch, kernel_size=3, padding=1, stride=1, dilation=1, *, dtype=None, rngs):
    return Sequential([
        Conv2d(in_ch, in_ch, kernel_size, stride=stride, padding=padding, dilation=dilation, groups=in_ch,
               bias=False, dtype=dtype, rngs=rngs),
        BatchNorm2d(in_ch, dtype=dtype), ReLU(),
        Conv2d(in_ch, out_ch, 1, padding=0, bias=False, dtype=dtype, rngs=rngs),
        BatchNorm2d(out_ch, dtype=dtype), ReLU(),
    ])


def conv_dw_no_bn(in_ch, out_ch, kernel_size=3, padding=1, stride=1, dilation=1, *, dtype=None, rngs):
    return Sequential([
        Conv2d(in_ch, in_ch, kernel_size, stride=stride, padding=padding, dilation=dilation, groups=in_ch,
               bias=False, dtype=dtype, rngs=rngs),
        ELU(),
        Conv2d(in_ch, out_ch, 1, padding=0, bias=False, dtype=dtype, rngs=rngs),
        ELU(),
    ])


BACKBONE_DEPTH = 12       # the original's blocks, model.0 .. model.11
MIN_BACKBONE_DEPTH = 7    # up to conv4_2 (model.6): stride 8 and the CPM's input channels


def mobilenet_backbone(width: float = 1.0, depth: int = BACKBONE_DEPTH, *, dtype=None, rngs):
    """Dilated MobileNet-v1 up to conv5_5 (stride 8): 12 blocks, ``model.0`` .. ``model.11``.

    ``width`` multiplies every block's channels (MobileNet's width multiplier; the original: 1.0).
    ``depth`` keeps the first blocks only (7..12; the original: 12), dropping trailing conv5 blocks:
    a shorter, faster network for small inputs such as the CPU demo's.
    """
    if not MIN_BACKBONE_DEPTH <= depth <= BACKBONE_DEPTH:
        raise ValueError(f'backbone depth must be {MIN_BACKBONE_DEPTH}..{BACKBONE_DEPTH} blocks, not {depth}')
    kw = dict(dtype=dtype, rngs=rngs)
    c32, c64, c128, c256, c512 = (backbone_channels(c, width) for c in (32, 64, 128, 256, 512))
    blocks = [
        conv(3, c32, stride=2, bias=False, **kw),
        conv_dw(c32, c64, **kw),
        conv_dw(c64, c128, stride=2, **kw),
        conv_dw(c128, c128, **kw),
        conv_dw(c128, c256, stride=2, **kw),
        conv_dw(c256, c256, **kw),
        conv_dw(c256, c512, **kw),                        # conv4_2: stride 1 keeps the output at stride 8
        conv_dw(c512, c512, dilation=2, padding=2, **kw),  # ... and dilation 2 keeps the receptive field
        conv_dw(c512, c512, **kw),
        conv_dw(c512, c512, **kw),
        conv_dw(c512, c512, **kw),
        conv_dw(c512, c512, **kw),                        # conv5_5
    ]
    # Built in full, then cut: the kept blocks and the layers after them get the same initial weights
    # (same seed) as in the full network.
    return Sequential(blocks[:depth])


def backbone_channels(channels: int, width: float) -> int:
    """A backbone block's channels at a width multiplier: rounded, at least 8."""
    return max(8, int(round(channels * width)))


class Cpm(nnx.Module):
    def __init__(self, in_channels, out_channels, *, dtype=None, rngs):
        kw = dict(dtype=dtype, rngs=rngs)
        self.align = conv(in_channels, out_channels, kernel_size=1, padding=0, bn=False, **kw)
        self.trunk = Sequential([conv_dw_no_bn(out_channels, out_channels, **kw) for _ in range(3)])
        self.conv = conv(out_channels, out_channels, bn=False, **kw)

    def __call__(self, x):
        x = self.align(x)
        return self.conv(x + self.trunk(x))


def _heads(num_channels, hidden, num_heatmaps, num_pafs, *, dtype, rngs):
    def head(n_out):
        return Sequential([
            conv(num_channels, hidden, kernel_size=1, padding=0, bn=False, dtype=dtype, rngs=rngs),
            conv(hidden, n_out, kernel_size=1, padding=0, bn=False, relu=False, dtype=dtype, rngs=rngs),
        ])
    return head(num_heatmaps), head(num_pafs)


class InitialStage(nnx.Module):
    def __init__(self, num_channels, num_heatmaps, num_pafs, *, dtype=None, rngs):
        self.trunk = Sequential([conv(num_channels, num_channels, bn=False, dtype=dtype, rngs=rngs)
                                 for _ in range(3)])
        self.heatmaps, self.pafs = _heads(num_channels, 512, num_heatmaps, num_pafs, dtype=dtype, rngs=rngs)

    def __call__(self, x):
        features = self.trunk(x)
        return self.heatmaps(features), self.pafs(features)


class RefinementStageBlock(nnx.Module):
    def __init__(self, in_channels, out_channels, *, dtype=None, rngs):
        kw = dict(dtype=dtype, rngs=rngs)
        self.initial = conv(in_channels, out_channels, kernel_size=1, padding=0, bn=False, **kw)
        # These convs have a bias *and* a BatchNorm, as in the original.
        self.trunk = Sequential([
            conv(out_channels, out_channels, **kw),
            conv(out_channels, out_channels, dilation=2, padding=2, **kw),
        ])

    def __call__(self, x):
        initial = self.initial(x)
        return initial + self.trunk(initial)


class RefinementStage(nnx.Module):
    def __init__(self, in_channels, out_channels, num_heatmaps, num_pafs, *, dtype=None, rngs):
        self.trunk = Sequential([
            RefinementStageBlock(in_channels if i == 0 else out_channels, out_channels, dtype=dtype, rngs=rngs)
            for i in range(5)])
        self.heatmaps, self.pafs = _heads(out_channels, out_channels, num_heatmaps, num_pafs,
                                          dtype=dtype, rngs=rngs)

    def __call__(self, x):
        features = self.trunk(x)
        return self.heatmaps(features), self.pafs(features)


class PoseNet(nnx.Module):
    """Lightweight OpenPose: backbone -> CPM -> initial stage -> refinement stages.

    ``model(x)`` with ``x`` (N, H, W, 3) float32 returns a list with one ``(heatmaps, pafs)`` pair per
    stage, shapes (N, H/8, W/8, 19) and (N, H/8, W/8, 38), float32. The last pair is what inference uses.
    ``dtype=jnp.bfloat16`` computes in bfloat16 with float32 parameters, BatchNorm and outputs.
    ``backbone_width`` (MobileNet's width multiplier), ``backbone_depth`` (backbone blocks kept) and
    ``num_channels`` (CPM and stages) make smaller networks, e.g. for the CPU demo; the original and its
    checkpoints are 1.0, 12 and 128.
    """

    def __init__(self, num_refinement_stages: int = 1, num_channels: int = 128,
                 num_heatmaps: int = skeleton.NUM_HEATMAPS, num_pafs: int = skeleton.NUM_PAFS,
                 *, backbone_width: float = 1.0, backbone_depth: int = BACKBONE_DEPTH, dtype=None,
                 rngs: nnx.Rngs | None = None):
        rngs = rngs if rngs is not None else nnx.Rngs(0)
        kw = dict(dtype=dtype, rngs=rngs)
        self.model = mobilenet_backbone(backbone_width, backbone_depth, **kw)
        self.cpm = Cpm(backbone_channels(512, backbone_width), num_channels, **kw)
        self.initial_stage = InitialStage(num_channels, num_heatmaps, num_pafs, **kw)
        self.refinement_stages = nnx.List([
            RefinementStage(num_channels + num_heatmaps + num_pafs, num_channels, num_heatmaps, num_pafs, **kw)
            for _ in range(num_refinement_stages)])
        self.num_refinement_stages = num_refinement_stages
        self.num_channels = num_channels
        self.backbone_width = backbone_width
        self.backbone_depth = backbone_depth
        self.layout = 'NHWC'

    def __call__(self, x):
        features = self.cpm(self.model(x))
        heatmaps, pafs = self.initial_stage(features)
        outputs = [(heatmaps, pafs)]
        channel_axis = -1 if self.layout == 'NHWC' else 1
        for stage in self.refinement_stages:
            # Order matters: (features, heatmaps, pafs), as the original concatenates them.
            heatmaps, pafs = stage(jnp.concatenate([features, heatmaps, pafs], axis=channel_axis))
            outputs.append((heatmaps, pafs))
        return [(h.astype(jnp.float32), p.astype(jnp.float32)) for h, p in outputs]

    def set_training(self, training: bool):
        """Train mode: BatchNorm on batch statistics (and updating them); eval: running statistics."""
        for _, module in nnx.iter_modules(self):
            if isinstance(module, BatchNorm2d):
                module.use_running_average = not training
        return self

    def set_layout(self, layout: str):
        """'NHWC' (default: inputs and outputs NHWC) or 'NCHW' (used for export)."""
        if layout not in ('NHWC', 'NCHW'):
            raise ValueError(f'layout must be NHWC or NCHW, not {layout!r}')
        for _, module in nnx.iter_modules(self):
            if hasattr(module, 'layout'):
                module.layout = layout
        return self

    @classmethod
    def from_torch(cls, path, **kwargs) -> 'PoseNet':
        """Loads a torch checkpoint (``checkpoint_iter_370000.pth`` format) without PyTorch; eval mode."""
        from lwop_jax import weights
        return weights.model_from_torch(path, **kwargs)
