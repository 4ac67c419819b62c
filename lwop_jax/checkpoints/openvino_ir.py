"""OpenVINO IR from an exported ONNX file, tagged with its precision, written so a crash leaves no half file.

No jax: converting an ONNX file (``lwop convert model.onnx --openvino DIR``) needs only openvino.
"""

from __future__ import annotations

import os
import pathlib

from lwop_jax.checkpoints import metadata


def export_openvino(onnx_path, output_dir, input_size=None, precision: str | None = None) -> pathlib.Path:
    """Converts an exported ONNX file to OpenVINO IR (``<output_dir>/<stem>.xml`` + ``.bin``).

    ``input_size`` (H, W) fixes the spatial shape (the batch stays dynamic); None keeps it dynamic.
    ``precision`` (fp32, bf16) tags the IR; None: the ONNX file's tag, fp32 if it has none.
    """
    import openvino as ov  # the [openvino] extra

    onnx_path = pathlib.Path(onnx_path)
    model = ov.convert_model(str(onnx_path))
    metadata.tag_openvino(model, precision or metadata.openvino_precision(model) or metadata.DEFAULT_PRECISION)
    schema = metadata.openvino_schema(model)  # the ONNX file's, read into rt_info['framework']
    if schema is not None:
        metadata.tag_openvino_schema(model, schema)
    if input_size is not None:
        model.reshape({'data': ov.PartialShape([-1, 3, *input_size])})
    return save_openvino(model, pathlib.Path(output_dir) / f'{onnx_path.stem}.xml')


def save_openvino(model, output_xml) -> pathlib.Path:
    """``ov.save_model`` (float32 weights kept) next to the destination, then both files renamed: a crash
    leaves no half-written IR."""
    import openvino as ov  # the [openvino] extra

    output_xml = pathlib.Path(output_xml)
    output_xml.parent.mkdir(parents=True, exist_ok=True)
    tmp_xml = output_xml.with_name(f'.{output_xml.stem}.tmp.xml')
    ov.save_model(model, str(tmp_xml), compress_to_fp16=False)
    os.replace(tmp_xml.with_suffix('.bin'), output_xml.with_suffix('.bin'))
    os.replace(tmp_xml, output_xml)
    return output_xml


__all__ = ['export_openvino', 'save_openvino']
