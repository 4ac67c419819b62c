"""PoseNet: Lightweight OpenPose (``PoseEstimationWithMobileNet``) in Flax NNX.

The module tree mirrors the PyTorch state-dict keys one to one: ``model.7.0`` is the depthwise conv of
backbone block 7, ``cpm.trunk.1.2`` the pointwise conv of the second CPM block,
``refinement_stages.0.trunk.4.trunk.1.1`` a BatchNorm. Torch ``nn.Sequential`` containers are
:class:`~lwop_jax.model.layers.Sequential` lists whose activations occupy their own index, exactly as in
torch, so converting a checkpoint is a rename of the leaf names only (``weight`` -> ``kernel``/``scale``,
``running_mean`` -> ``mean``, ...). See :mod:`lwop_jax.checkpoints.torch_names`.

Layout is NHWC inside; inputs are BGR images normalised like the original, ``(img - 128) / 256``.
"""

from __future__ import annotations

import jax.numpy as jnp
from flax import nnx

from lwop_jax import skeleton
from lwop_jax.model.layers import ELU, BatchNorm2d, Conv2d, ReLU, Sequential, resolved_formulation

# The building blocks of the original modules/conv.py, with the same child indices.


def conv(
    in_ch, out_ch, kernel_size=3, padding=1, bn=True, dilation=1, stride=1, relu=True, bias=True, *, dtype=None, rngs
):
    layers = [
        Conv2d(
            in_ch,
            out_ch,
            kernel_size,
            stride=stride,
            padding=padding,
            dilation=dilation,
            bias=bias,
            dtype=dtype,
            rngs=rngs,
        )
    ]
    if bn:
        layers.append(BatchNorm2d(out_ch, dtype=dtype))
    if relu:
        layers.append(ReLU())
    return Sequential(layers)


def conv_dw(in_ch, out_ch, kernel_size=3, padding=1, stride=1, dilation=1, *, dtype=None, rngs):
    return Sequential(
        [
            Conv2d(
                in_ch,
                in_ch,
                kernel_size,
                stride=stride,
                padding=padding,
                dilation=dilation,
                groups=in_ch,
                bias=False,
                dtype=dtype,
                rngs=rngs,
            ),
            BatchNorm2d(in_ch, dtype=dtype),
            ReLU(),
            Conv2d(in_ch, out_ch, 1, padding=0, bias=False, dtype=dtype, rngs=rngs),
            BatchNorm2d(out_ch, dtype=dtype),
            ReLU(),
        ]
    )


def conv_dw_no_bn(in_ch, out_ch, kernel_size=3, padding=1, stride=1, dilation=1, *, dtype=None, rngs):
    return Sequential(
        [
            Conv2d(
                in_ch,
                in_ch,
                kernel_size,
                stride=stride,
                padding=padding,
                dilation=dilation,
                groups=in_ch,
                bias=False,
                dtype=dtype,
                rngs=rngs,
            ),
            ELU(),
            Conv2d(in_ch, out_ch, 1, padding=0, bias=False, dtype=dtype, rngs=rngs),
            ELU(),
        ]
    )


# The original's size (and its checkpoints'): MobileNet width 1.0, 12 backbone blocks, 128 channels.
BACKBONE_WIDTH = 1.0
BACKBONE_DEPTH = 12  # the original's blocks, model.0 .. model.11
NUM_CHANNELS = 128  # CPM and stages
MIN_BACKBONE_DEPTH = 7  # up to conv4_2 (model.6): stride 8 and the CPM's input channels


def mobilenet_backbone(width: float = BACKBONE_WIDTH, depth: int = BACKBONE_DEPTH, *, dtype=None, rngs):
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
        conv_dw(c256, c512, **kw),  # conv4_2: stride 1 keeps the output at stride 8
        conv_dw(c512, c512, dilation=2, padding=2, **kw),  # ... and dilation 2 keeps the receptive field
        conv_dw(c512, c512, **kw),
        conv_dw(c512, c512, **kw),
        conv_dw(c512, c512, **kw),
        conv_dw(c512, c512, **kw),  # conv5_5
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
        return Sequential(
            [
                conv(num_channels, hidden, kernel_size=1, padding=0, bn=False, dtype=dtype, rngs=rngs),
                conv(hidden, n_out, kernel_size=1, padding=0, bn=False, relu=False, dtype=dtype, rngs=rngs),
            ]
        )

    return head(num_heatmaps), head(num_pafs)


class InitialStage(nnx.Module):
    def __init__(self, num_channels, num_heatmaps, num_pafs, *, dtype=None, rngs):
        self.trunk = Sequential([conv(num_channels, num_channels, bn=False, dtype=dtype, rngs=rngs) for _ in range(3)])
        self.heatmaps, self.pafs = _heads(num_channels, 512, num_heatmaps, num_pafs, dtype=dtype, rngs=rngs)

    def __call__(self, x):
        features = self.trunk(x)
        return self.heatmaps(features), self.pafs(features)


class RefinementStageBlock(nnx.Module):
    def __init__(self, in_channels, out_channels, *, dtype=None, rngs):
        kw = dict(dtype=dtype, rngs=rngs)
        self.initial = conv(in_channels, out_channels, kernel_size=1, padding=0, bn=False, **kw)
        # These convs have a bias *and* a BatchNorm, as in the original.
        self.trunk = Sequential(
            [
                conv(out_channels, out_channels, **kw),
                conv(out_channels, out_channels, dilation=2, padding=2, **kw),
            ]
        )

    def __call__(self, x):
        initial = self.initial(x)
        return initial + self.trunk(initial)


class RefinementStage(nnx.Module):
    def __init__(self, in_channels, out_channels, num_heatmaps, num_pafs, *, dtype=None, rngs):
        self.trunk = Sequential(
            [
                RefinementStageBlock(in_channels if i == 0 else out_channels, out_channels, dtype=dtype, rngs=rngs)
                for i in range(5)
            ]
        )
        self.heatmaps, self.pafs = _heads(out_channels, out_channels, num_heatmaps, num_pafs, dtype=dtype, rngs=rngs)

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

    def __init__(
        self,
        num_refinement_stages: int = 1,
        num_channels: int = NUM_CHANNELS,
        num_heatmaps: int = skeleton.NUM_HEATMAPS,
        num_pafs: int = skeleton.NUM_PAFS,
        *,
        backbone_width: float = BACKBONE_WIDTH,
        backbone_depth: int = BACKBONE_DEPTH,
        dtype=None,
        rngs: nnx.Rngs | None = None,
    ):
        rngs = rngs if rngs is not None else nnx.Rngs(0)
        kw = dict(dtype=dtype, rngs=rngs)
        self.model = mobilenet_backbone(backbone_width, backbone_depth, **kw)
        self.cpm = Cpm(backbone_channels(512, backbone_width), num_channels, **kw)
        self.initial_stage = InitialStage(num_channels, num_heatmaps, num_pafs, **kw)
        self.refinement_stages = nnx.List(
            [
                RefinementStage(num_channels + num_heatmaps + num_pafs, num_channels, num_heatmaps, num_pafs, **kw)
                for _ in range(num_refinement_stages)
            ]
        )
        self.num_refinement_stages = num_refinement_stages
        self.num_channels = num_channels
        self.num_heatmaps, self.num_pafs = num_heatmaps, num_pafs  # the keypoint schema's K + 1 and 2 L
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

    def set_conv_formulation(self, formulation: str):
        """How depthwise and 1x1 convolutions are computed: 'auto' (default), 'plain' or 'shifted'
        (see :data:`lwop_jax.model.layers.CONV_FORMULATIONS`)."""
        resolved_formulation(formulation)  # checks the name
        for _, module in nnx.iter_modules(self):
            if isinstance(module, Conv2d):
                module.formulation = formulation
        return self

    def set_layout(self, layout: str):
        """'NHWC' (default: inputs and outputs NHWC) or 'NCHW' (used for export)."""
        if layout not in ('NHWC', 'NCHW'):
            raise ValueError(f'layout must be NHWC or NCHW, not {layout!r}')
        for _, module in nnx.iter_modules(self):
            if hasattr(module, 'layout'):
                module.layout = layout
        return self
