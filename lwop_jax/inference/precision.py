"""Which precision a backend runs a model at: the one asked for, the model file's tag, what the runtime can do.

``--precision`` / ``PoseEstimator(precision=...)`` asks; the model file's tag (see
:mod:`lwop_jax.checkpoints.metadata`) is the default; ``fp32`` when neither says. Then:

* ``int8`` needs a quantized file, and a quantized file runs at int8 only: asking for int8 of a float
  model, or fp32 / bf16 of a quantized one, is an error (quantizing needs calibration images: ``lwop convert
  --precision int8``).
* ``bf16`` is OpenVINO's ``INFERENCE_PRECISION_HINT``: on a CPU without bf16 (the device's
  OPTIMIZATION_CAPABILITIES has no ``BF16``) it runs fp32 with a one-line warning. ONNX Runtime's CPU
  provider and the JAX backend have no bf16 mode: asking them for bf16 is an error; a file merely tagged
  bf16 runs fp32 there, with a warning.

CPU inference path: standard library and tqdm only.
"""

from __future__ import annotations

import sys

from tqdm import tqdm

from lwop_jax.checkpoints.metadata import DEFAULT_PRECISION, PRECISIONS
from lwop_jax.errors import ModelFileError

# What each backend can run; OpenVINO's bf16 further depends on the CPU.
SUPPORTED = {'onnxruntime': ('fp32', 'int8'), 'openvino': ('fp32', 'bf16', 'int8'), 'jax': ('fp32',)}
# OpenVINO's INFERENCE_PRECISION_HINT per precision. An int8 model's layers kept in float (and its
# quantize/dequantize arithmetic) run at f32: on a CPU with bf16 OpenVINO's default would be bf16.
OPENVINO_HINTS = {'fp32': 'f32', 'bf16': 'bf16', 'int8': 'f32'}


def warn(message: str) -> None:
    """One line on stderr that does not break a progress bar."""
    tqdm.write(f'warning: {message}', file=sys.stderr)


def resolve(
    path, backend: str, requested: str | None, file_precision: str | None, *, bf16_available: bool = False
) -> str:
    """The precision ``backend`` runs the model at ``path`` with (see the module docstring).

    requested: the caller's choice (None: the file's tag). file_precision: the tag read from the file (None:
    untagged, an fp32 model). bf16_available: whether the device computes in bf16 (OpenVINO only).
    Raises ModelFileError for a combination that cannot run; prints a warning when it falls back to fp32.
    """
    if requested is not None and requested not in PRECISIONS:
        raise ModelFileError(f'{path}: unknown precision {requested!r}; choose one of {", ".join(PRECISIONS)}')
    if file_precision is not None and file_precision not in PRECISIONS:
        raise ModelFileError(f'{path}: the file says precision {file_precision!r}, which lwop_jax does not know')
    if file_precision == 'int8':
        if requested not in (None, 'int8'):
            raise ModelFileError(
                f'{path}: an int8-quantized model runs at int8 only, not {requested}; '
                f'use its fp32 model for {requested}'
            )
        if backend == 'jax':  # load_backend refuses graphs for jax before this; kept for direct callers
            raise ModelFileError(f'{path}: the JAX backend cannot run an int8 model')
        return 'int8'
    if requested == 'int8':
        raise ModelFileError(
            f'{path}: not a quantized model ({file_precision or DEFAULT_PRECISION}); make an int8 one with '
            '`lwop convert ... --precision int8 --calibration-images DIR`'
        )
    wanted = requested or file_precision or DEFAULT_PRECISION
    if wanted == 'bf16' and 'bf16' not in SUPPORTED[backend]:
        if requested == 'bf16':
            raise ModelFileError(
                f'{path}: the {backend} backend cannot run bf16 on the CPU; use --backend openvino, or --precision fp32'
            )
        warn(f'{path}: made for bf16, but the {backend} backend has no bf16 mode; running fp32')
        return 'fp32'
    if wanted == 'bf16' and not bf16_available:
        warn(f'{path}: this CPU has no bf16 (OpenVINO OPTIMIZATION_CAPABILITIES lacks BF16); running fp32')
        return 'fp32'
    return wanted


def openvino_bf16_available(core, device: str = 'CPU') -> bool:
    """Whether OpenVINO computes in bf16 on ``device`` (its OPTIMIZATION_CAPABILITIES lists BF16)."""
    try:
        capabilities = core.get_property(device, 'OPTIMIZATION_CAPABILITIES')
    except Exception:  # a device without the property: no bf16 we can rely on
        return False
    return 'BF16' in [str(c).upper() for c in capabilities]


__all__ = ['SUPPORTED', 'OPENVINO_HINTS', 'resolve', 'openvino_bf16_available', 'warn']
