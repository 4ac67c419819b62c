"""Post-training int8 quantization of an exported fp32 ONNX model, for ONNX Runtime and for OpenVINO.

* ONNX Runtime: ``onnxruntime.quantization``: ``quant_pre_process`` (shape inference, graph clean-up), then
  ``quantize_static`` in QDQ format, weights int8 per output channel, activations uint8 (asymmetric: the
  U8S8 pair ORT's x86 kernels run fastest; VNNI needs no reduced range), MinMax calibration.
* OpenVINO: NNCF's ``nncf.quantize`` on the IR converted from the same ONNX, preset MIXED (symmetric weights,
  asymmetric activations, as ORT's uint8 ones: the PERFORMANCE preset's symmetric activations lost
  0.007 AP more on the mini set with the heads kept in float). Set as the ORT path is: activation ranges
  are the global min and max over the calibration inputs (NNCF's default averages per-input extremes), and
  no overflow fix (NNCF's default stores the first layer's weights in 7 bits, for CPUs without VNNI, where
  int8 dot products can saturate). Together they took the demo's held-out int8 AP from 0.395-0.405 to
  0.409-0.417 (fp32 0.417); each alone gained little.

Both paths target CPUs with VNNI or AMX (Intel since Ice Lake, AMD since Zen 4): on older ones the u8 x s8
products can saturate, and a model quantized here may lose accuracy there.

Both keep the layers named in ``keep_fp32`` in float (ORT ``nodes_to_exclude``, NNCF ``IgnoredScope``):
by default the last stage's heads (:func:`last_stage_heads`), the layers whose quantization error goes
straight into the maps the decoder thresholds. What each choice cost and gained is in
``benchmarks/bench_precision.py``'s docstring.

Calibration inputs are network inputs as inference makes them (:func:`calibration_inputs`): each image
through the demo pre-processing at height 256 and the val.py one at base height 368, so the ranges cover
both paths. The quantized file is tagged ``int8`` (:mod:`lwop_jax.checkpoints.metadata`); the accuracy
gate (:mod:`lwop_jax.evaluation.gate`) decides whether it is kept.

Imports onnx and onnxruntime.quantization at the top (the [export] extra): only quantizing loads this module.
"""

from __future__ import annotations

import logging
import pathlib
import tempfile

import numpy as np
import onnx
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quantize_static,
)
from onnxruntime.quantization.shape_inference import quant_pre_process

from lwop_jax import atomic
from lwop_jax.checkpoints import metadata
from lwop_jax.checkpoints.openvino_ir import save_openvino
from lwop_jax.inference import preprocess

CALIBRATION_HEIGHTS = (('demo', preprocess.DEMO_HEIGHT), ('val', preprocess.VAL_BASE_HEIGHT))
KEEP_FP32_CHOICES = ('last-heads', 'all-heads', 'none')
# What each path does, as recorded in the model file's quantization record.
ONNX_METHOD = 'onnxruntime QDQ U8S8 per-channel MinMax'
OPENVINO_METHOD = 'NNCF MIXED MinMax, no overflow fix'


def calibration_inputs(images) -> list[np.ndarray]:
    """BGR uint8 images -> network inputs (1, 3, H, W) float32: each at the demo height and the val.py base
    height, padded as inference pads them."""
    inputs = []
    for image in images:
        for path, height in CALIBRATION_HEIGHTS:
            if path == 'demo':
                batch = preprocess.preprocess_demo(image, net_height=height)[0]
            else:
                batch = preprocess.preprocess_val(image, height, 1.0, preprocess.STRIDE)[0]
            inputs.append(np.ascontiguousarray(batch.transpose(0, 3, 1, 2), dtype=np.float32))
    return inputs


def head_convs(graph, output_name: str, count: int = 2) -> list[str]:
    """Names of the ``count`` Conv nodes nearest ``output_name``, walking back through the first input of
    each node (a head is two 1x1 convolutions, with bias Adds and a ReLU between them)."""
    producer = {out: node for node in graph.node for out in node.output}
    found: list[str] = []
    tensor = output_name
    while len(found) < count and tensor in producer:
        node = producer[tensor]
        if node.op_type == 'Conv':
            found.append(node.name)
        tensor = node.input[0]
    return found


def last_stage_heads(model: onnx.ModelProto, which: str = 'last-heads') -> list[str]:
    """The Conv nodes to keep in float for a ``--keep-fp32`` choice: 'last-heads' (both heads of the last
    stage: 4 convolutions), 'all-heads' (every stage's), 'none'; any other value is a comma-separated list
    of node names, taken as it is."""
    if which == 'none':
        return []
    if which not in KEEP_FP32_CHOICES:
        return [name for name in which.split(',') if name]
    outputs = [o.name for o in model.graph.output]
    stages = sorted({name.split('_output_')[0] for name in outputs if '_output_' in name})
    wanted = stages[-1:] if which == 'last-heads' else stages
    return [conv for name in outputs if name.split('_output_')[0] in wanted for conv in head_convs(model.graph, name)]


class _Inputs(CalibrationDataReader):
    def __init__(self, inputs, input_name: str):
        self._items = iter([{input_name: x} for x in inputs])

    def get_next(self):
        return next(self._items, None)


def quantize_onnx(fp32_path, output_path, inputs, keep_fp32: list[str], record: dict | None = None) -> pathlib.Path:
    """QDQ int8 ONNX of ``fp32_path`` calibrated on ``inputs``, written (tagged int8) to ``output_path``."""
    output_path = pathlib.Path(output_path)
    with tempfile.TemporaryDirectory(prefix='lwop_quant_') as work:
        prepared = pathlib.Path(work) / 'prepared.onnx'
        quantized = pathlib.Path(work) / 'quantized.onnx'
        quant_pre_process(str(fp32_path), str(prepared))
        input_name = onnx.load(str(prepared), load_external_data=False).graph.input[0].name
        quantize_static(
            str(prepared),
            str(quantized),
            _Inputs(inputs, input_name),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.MinMax,
            nodes_to_exclude=list(keep_fp32),
            # No CalibMaxIntermediateOutputs: MinMax keeps only per-tensor ReduceMin/Max values, so memory stays
            # small, and in ORT 1.32 that option drops the collected ranges instead of merging them.
        )
        proto = metadata.tag_onnx(onnx.load(str(quantized)), 'int8', record)
        schema = metadata.onnx_schema({p.key: p.value for p in onnx.load(str(fp32_path)).metadata_props})
        if schema is not None:  # the quantizer writes a new graph without the original's metadata
            metadata.tag_onnx_schema(proto, schema)
    atomic.write_bytes(output_path, proto.SerializeToString())
    return output_path


def quantize_openvino(fp32_onnx, output_xml, inputs, keep_fp32: list[str], record: dict | None = None) -> pathlib.Path:
    """NNCF int8 IR of the ONNX model ``fp32_onnx`` calibrated on ``inputs``, saved (tagged int8) as
    ``output_xml`` + ``.bin``."""
    import nncf  # the [openvino] extra, with openvino
    import openvino as ov
    from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters, OverflowFix
    from nncf.quantization.range_estimator import RangeEstimatorParametersSet

    # NNCF sets its logger to INFO when imported: follow lwop_jax's verbosity (quiet unless -v).
    logging.getLogger('nncf').setLevel(logging.getLogger('lwop_jax').getEffectiveLevel())
    # convert_model (the graph export_openvino saves), not read_model: from read_model's graph the CPU plugin
    # ran all 57 quantized convolutions in f32 (53 vs 10 ms per 256x456 input); from this one, 53 in u8.
    model = ov.convert_model(str(fp32_onnx))
    ignored = nncf.IgnoredScope(names=list(keep_fp32)) if keep_fp32 else None
    quantized = nncf.quantize(
        model,
        nncf.Dataset(inputs),
        preset=nncf.QuantizationPreset.MIXED,
        subset_size=len(inputs),
        ignored_scope=ignored,
        advanced_parameters=AdvancedQuantizationParameters(
            overflow_fix=OverflowFix.DISABLE,
            activations_range_estimator_params=RangeEstimatorParametersSet.MINMAX,
        ),
    )
    schema = metadata.openvino_schema(model)
    if schema is not None:
        metadata.tag_openvino_schema(quantized, schema)
    return save_openvino(metadata.tag_openvino(quantized, 'int8', record), output_xml)


def retag_onnx(path, output_path, record: dict) -> pathlib.Path:
    """A quantized ONNX file copied to ``output_path`` with its quantization record replaced."""
    proto = metadata.tag_onnx(onnx.load(str(path)), 'int8', record)
    atomic.write_bytes(output_path, proto.SerializeToString())
    return pathlib.Path(output_path)


def retag_openvino(xml, output_xml, record: dict) -> pathlib.Path:
    """A quantized IR saved as ``output_xml`` with its quantization record replaced."""
    import openvino as ov  # the [openvino] extra

    return save_openvino(metadata.tag_openvino(ov.Core().read_model(str(xml)), 'int8', record), output_xml)


__all__ = [
    'KEEP_FP32_CHOICES',
    'ONNX_METHOD',
    'OPENVINO_METHOD',
    'calibration_inputs',
    'last_stage_heads',
    'quantize_onnx',
    'quantize_openvino',
    'retag_onnx',
    'retag_openvino',
]
