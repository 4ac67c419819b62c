"""Export of PoseNet to ONNX (jax2onnx) and OpenVINO IR, with the original's input and output names.

The exported graph takes ``data``, NCHW float32 (N, 3, H, W) normalised like the original, and returns
``stage_0_output_1_heatmaps``, ``stage_0_output_0_pafs``, ``stage_1_output_1_heatmaps``, ... in NCHW,
as the original ``scripts/convert_to_onnx.py`` names them, so existing consumers work unchanged.
BatchNorm is folded into the preceding convolutions before export (the original's exporter did the same),
and subnormal float32 weights are stored as zero (:func:`flush_subnormal_weights`). Every file is tagged with
its precision (:mod:`lwop_jax.checkpoints.metadata`): fp32, or bf16 (float32 weights, meant for bf16 compute).
"""

from __future__ import annotations

import pathlib

import jax.numpy as jnp
import numpy as np
from flax import nnx

from lwop_jax import atomic
from lwop_jax.checkpoints import metadata
from lwop_jax.checkpoints.openvino_ir import export_openvino  # here too: export's public API
from lwop_jax.model.layers import BatchNorm2d, Conv2d, Sequential
from lwop_jax.model.posenet import PoseNet
from lwop_jax.schema import load_schema


class Identity(nnx.Module):
    def __call__(self, x):
        return x


def output_names(num_stages: int) -> list[str]:
    """The original's output names: per stage, heatmaps ('output_1') then PAFs ('output_0')."""
    names = []
    for stage in range(num_stages):
        names += [f'stage_{stage}_output_1_heatmaps', f'stage_{stage}_output_0_pafs']
    return names


def fold_batchnorm(model: PoseNet) -> PoseNet:
    """A copy of ``model`` in which every Conv2d followed by a BatchNorm2d absorbs it (eval semantics).

    The fold is computed in float64 and stored in float32: w' = w * g / sqrt(v + eps),
    b' = (b - m) * g / sqrt(v + eps) + beta (b = 0 for convs without bias).
    """
    folded = nnx.clone(model)
    for _, module in nnx.iter_modules(folded):
        if not isinstance(module, Sequential):
            continue
        for i in range(len(module) - 1):
            conv, bn = module[i], module[i + 1]
            if not (isinstance(conv, Conv2d) and isinstance(bn, BatchNorm2d)):
                continue
            factor = np.asarray(bn.scale[...], np.float64) / np.sqrt(np.asarray(bn.var[...], np.float64) + bn.epsilon)
            bias = np.zeros_like(factor) if conv.bias is None else np.asarray(conv.bias[...], np.float64)
            new_bias = (bias - np.asarray(bn.mean[...], np.float64)) * factor + np.asarray(bn.bias[...], np.float64)
            conv.kernel[...] = jnp.asarray(np.asarray(conv.kernel[...], np.float64) * factor, jnp.float32)
            if conv.bias is None:
                conv.bias = nnx.data(nnx.Param(jnp.asarray(new_bias, jnp.float32)))
            else:
                conv.bias[...] = jnp.asarray(new_bias, jnp.float32)
            module[i + 1] = Identity()
    return folded


def flush_subnormal_weights(model: PoseNet) -> int:
    """Sets every subnormal float32 weight of ``model`` (|w| < 1.2e-38) to zero, in place; returns how many.

    Why: CPUs handle subnormal operands in microcode, tens of times slower. The trained reference checkpoint
    holds 64,707 of them (weight decay drives unused weights towards zero), and they made its ONNX Runtime
    fp32 frame 2.6x slower than the same network with random weights. Their products are below 1e-38, under
    the rounding of any output, so the outputs do not change.
    """
    tiny = np.finfo(np.float32).tiny
    flushed = 0
    for _, param in nnx.iter_graph(model):
        if isinstance(param, nnx.Param) and param[...].dtype == jnp.float32:
            values = np.asarray(param[...])
            subnormal = (values != 0) & (np.abs(values) < tiny)
            if subnormal.any():
                flushed += int(subnormal.sum())
                param[...] = jnp.asarray(np.where(subnormal, np.float32(0), values))
    return flushed


def nchw_forward(model: PoseNet):
    """``f(x_nchw) -> tuple of NCHW outputs`` in the original's output order, computed in NCHW."""
    nchw = nnx.clone(model).set_layout('NCHW')

    def forward(x):
        return tuple(t for pair in nchw(x) for t in pair)

    return forward


def to_onnx_model(model: PoseNet, input_size=(256, 456), *, dynamic: bool = True, flush_subnormals: bool = True):
    """ONNX ModelProto of the BN-folded model. ``dynamic``: symbolic batch, height and width.
    ``flush_subnormals=False`` keeps subnormal weights (only to measure what they cost)."""
    from jax2onnx import to_onnx  # the [export] extra; loading a model needs only jax

    folded = fold_batchnorm(model).set_training(False)
    if flush_subnormals:
        flush_subnormal_weights(folded)
    shape = ('N', 3, 'H', 'W') if dynamic else (1, 3, *input_size)
    names = output_names(1 + model.num_refinement_stages)
    return to_onnx(
        nchw_forward(folded),
        inputs=[shape],
        model_name='lightweight_openpose',
        input_names=['data'],
        output_names=names,
    )


def export_onnx(
    model: PoseNet,
    path,
    input_size=(256, 456),
    *,
    dynamic: bool = True,
    precision: str = 'fp32',
    flush_subnormals: bool = True,
) -> pathlib.Path:
    """Writes the ONNX file (tagged ``precision``: fp32 or bf16) atomically and returns its path."""
    if precision not in ('fp32', 'bf16'):
        raise ValueError(f'export_onnx writes fp32 or bf16 models; int8 is quantize.quantize_onnx, not {precision}')
    path = pathlib.Path(path)
    proto = metadata.tag_onnx(
        to_onnx_model(model, input_size, dynamic=dynamic, flush_subnormals=flush_subnormals), precision
    )
    schema = getattr(model, 'keypoint_schema', None) or load_schema()  # a model without one is the original's
    metadata.tag_onnx_schema(proto, schema.to_json())
    atomic.write_bytes(path, proto.SerializeToString())
    return path


__all__ = [
    'output_names',
    'fold_batchnorm',
    'flush_subnormal_weights',
    'to_onnx_model',
    'export_onnx',
    'export_openvino',
]
