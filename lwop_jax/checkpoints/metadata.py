"""The precision a model file was made for, written into the file itself.

ONNX keeps it in ``metadata_props`` (key :data:`PRECISION_KEY`), OpenVINO IR in ``rt_info``
(``<lwop_jax><precision value=.../></lwop_jax>``); OpenVINO also reads an ONNX file's ``metadata_props``
into ``rt_info['framework']``, so an ONNX model opened with OpenVINO keeps its tag. Quantized models carry a
second entry, :data:`QUANTIZATION_KEY`: a JSON record of how they were made (calibration, the layers kept in
float, the accuracy gate's figures).

Precisions:

* ``fp32``: float32 weights and compute (the default; exact).
* ``bf16``: float32 weights, meant to be run with bfloat16 compute (OpenVINO's ``INFERENCE_PRECISION_HINT``
  where the CPU has bf16); the tag is a hint the runtime follows, the weights are unchanged.
* ``int8``: post-training quantized (QDQ ONNX for ONNX Runtime, NNCF IR for OpenVINO).

No imports beyond the standard library: the functions take the onnx / openvino objects they tag.
"""

from __future__ import annotations

import json

PRECISIONS = ('fp32', 'bf16', 'int8')
DEFAULT_PRECISION = 'fp32'
PRECISION_KEY = 'lwop_jax.precision'
QUANTIZATION_KEY = 'lwop_jax.quantization'
# OpenVINO rt_info paths: ours, and where OpenVINO puts an ONNX file's metadata_props.
OPENVINO_PRECISION_PATH = ['lwop_jax', 'precision']
OPENVINO_QUANTIZATION_PATH = ['lwop_jax', 'quantization']
OPENVINO_FRAMEWORK_PATH = ['framework', PRECISION_KEY]


def check_precision(precision: str) -> str:
    """``precision`` when it is one of :data:`PRECISIONS`, else ValueError."""
    if precision not in PRECISIONS:
        raise ValueError(f'unknown precision {precision!r}; choose one of {", ".join(PRECISIONS)}')
    return precision


def tag_onnx(proto, precision: str, quantization: dict | None = None):
    """Writes the precision (and the quantization record) into an ONNX ModelProto's metadata_props,
    replacing earlier values; returns the proto."""
    entries = {PRECISION_KEY: check_precision(precision)}
    if quantization is not None:
        entries[QUANTIZATION_KEY] = json.dumps(quantization, sort_keys=True)
    kept = [(p.key, p.value) for p in proto.metadata_props if p.key not in entries and p.key != QUANTIZATION_KEY]
    del proto.metadata_props[:]
    for key, value in [*kept, *entries.items()]:
        proto.metadata_props.add(key=key, value=value)
    return proto


def tag_openvino(model, precision: str, quantization: dict | None = None):
    """Writes the precision (and the quantization record) into an openvino.Model's rt_info; returns it."""
    model.set_rt_info(check_precision(precision), OPENVINO_PRECISION_PATH)
    if quantization is not None:
        model.set_rt_info(json.dumps(quantization, sort_keys=True), OPENVINO_QUANTIZATION_PATH)
    return model


def onnx_precision(metadata: dict) -> str | None:
    """The precision in an ONNX file's metadata (a dict, e.g. ORT's ``custom_metadata_map``), or None."""
    return metadata.get(PRECISION_KEY)


def openvino_precision(model) -> str | None:
    """The precision in an openvino.Model's rt_info (ours, else an ONNX file's metadata), or None."""
    for path in (OPENVINO_PRECISION_PATH, OPENVINO_FRAMEWORK_PATH):
        if model.has_rt_info(path):
            return str(model.get_rt_info(path).astype(str))
    return None


def openvino_quantization(model) -> dict | None:
    """The quantization record of an openvino.Model, or None."""
    if model.has_rt_info(OPENVINO_QUANTIZATION_PATH):
        return json.loads(model.get_rt_info(OPENVINO_QUANTIZATION_PATH).astype(str))
    return None


__all__ = [
    'PRECISIONS',
    'DEFAULT_PRECISION',
    'PRECISION_KEY',
    'QUANTIZATION_KEY',
    'check_precision',
    'tag_onnx',
    'tag_openvino',
    'onnx_precision',
    'openvino_precision',
    'openvino_quantization',
]


# ----------------------------------------------------------------------------------- keypoint schema
# The model's keypoint schema (lwop_jax.schema, as its JSON object) travels in the same places.
SCHEMA_KEY = 'lwop_jax.keypoint_schema'
OPENVINO_SCHEMA_PATH = ['lwop_jax', 'keypoint_schema']
OPENVINO_FRAMEWORK_SCHEMA_PATH = ['framework', SCHEMA_KEY]


def tag_onnx_schema(proto, schema_json: dict):
    """Writes the keypoint schema (its JSON object) into an ONNX ModelProto's metadata_props; returns it."""
    kept = [(p.key, p.value) for p in proto.metadata_props if p.key != SCHEMA_KEY]
    del proto.metadata_props[:]
    for key, value in [*kept, (SCHEMA_KEY, json.dumps(schema_json))]:
        proto.metadata_props.add(key=key, value=value)
    return proto


def tag_openvino_schema(model, schema_json: dict):
    """Writes the keypoint schema into an openvino.Model's rt_info; returns the model."""
    model.set_rt_info(json.dumps(schema_json), OPENVINO_SCHEMA_PATH)
    return model


def onnx_schema(metadata: dict) -> dict | None:
    """The keypoint schema's JSON object in an ONNX file's metadata (ORT's ``custom_metadata_map``), or None
    (a file written before schemas, or by another tool: coco18)."""
    text = metadata.get(SCHEMA_KEY)
    return None if text is None else _json_or_text(text)


def openvino_schema(model) -> dict | None:
    """The keypoint schema's JSON object in an openvino.Model's rt_info (ours, else an ONNX file's), or None."""
    for path in (OPENVINO_SCHEMA_PATH, OPENVINO_FRAMEWORK_SCHEMA_PATH):
        if model.has_rt_info(path):
            return _json_or_text(str(model.get_rt_info(path).astype(str)))
    return None


def _json_or_text(text: str):
    # Damaged JSON comes back as the text itself; the schema check then names the file and the problem.
    try:
        return json.loads(text)
    except ValueError:
        return text
