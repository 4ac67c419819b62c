"""Network runtimes behind one call: ``backend(images) -> (heatmaps, pafs)`` of the last stage.

One small adapter per runtime: ONNX Runtime (the CPU default), OpenVINO, JAX. Each takes a batch of
network inputs, (N, H, W, 3) float32 NHWC normalised like the original, H and W multiples of 8, and
returns the last stage's maps NHWC float32: heatmaps (N, H/8, W/8, 19), PAFs (N, H/8, W/8, 38).

This module imports NumPy and ONNX Runtime at import time: the ONNX Runtime and OpenVINO paths never load
jax or tensorflow.
A torch checkpoint or orbax folder given to ONNX Runtime or OpenVINO is exported to ONNX once (needs
the ``export`` extra) and cached next to the other converted models (see :func:`cache_dir`).
"""

from __future__ import annotations

import hashlib
import os
import pathlib
import re

import numpy as np
import onnxruntime as ort

import lwop_jax
from lwop_jax.checkpoints import hub, metadata
from lwop_jax.errors import FetchError, ModelFileError
from lwop_jax.inference import precision as precisions
from lwop_jax.paths import cache_dir
from lwop_jax.schema import KeypointSchema, load_schema, schema_from_json

ONNX_SUFFIXES = ('.onnx',)
OPENVINO_SUFFIXES = ('.xml',)


def _last_stage_names(names: list[str]) -> tuple[str, str]:
    """Output names of the last stage's heatmaps and PAFs (the original's naming scheme)."""
    stages = [int(m.group(1)) for n in names if (m := re.match(r'stage_(\d+)_output_', n))]
    if not stages:
        raise ModelFileError(f'outputs {names} do not follow the stage_K_output_{{1_heatmaps,0_pafs}} naming')
    last = max(stages)
    return f'stage_{last}_output_1_heatmaps', f'stage_{last}_output_0_pafs'


def _to_nchw(images: np.ndarray) -> np.ndarray:
    if images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f'network input must be (N, H, W, 3), got {images.shape}')
    return np.ascontiguousarray(images.transpose(0, 3, 1, 2), dtype=np.float32)


def _to_nhwc(maps: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(maps.transpose(0, 2, 3, 1))


class OnnxRuntimeBackend:
    """ONNX Runtime's CPU provider: fp32, or int8 from a QDQ-quantized file (``precision``: see
    :func:`lwop_jax.inference.precision.resolve`; None: the file's tag)."""

    name = 'onnxruntime'

    def __init__(self, path, threads: int | None = None, precision: str | None = None, keypoint_schema=None):
        options = ort.SessionOptions()
        # No busy-waiting between runs: pre-processing and decoding run between network calls and
        # would otherwise compete with ORT's idle threads spinning on the same cores.
        options.add_session_config_entry('session.intra_op.allow_spinning', '0')
        if threads:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        self.session = _ort_session(path, str(path), options)
        file_metadata = self.session.get_modelmeta().custom_metadata_map
        self.flushed_weights = 0
        # lwop_jax's exports (tagged with a precision) hold no subnormal weights: only other files are read
        # again to look for them, so our own pay no second parse at start-up.
        if metadata.onnx_precision(file_metadata) is None:
            self.flushed_weights, model = flush_subnormal_initializers(path)
            if self.flushed_weights:
                self.session = _ort_session(path, model, options)
        self.precision = precisions.resolve(path, self.name, precision, metadata.onnx_precision(file_metadata))
        self.input_name = self.session.get_inputs()[0].name
        self.outputs = list(_last_stage_names([o.name for o in self.session.get_outputs()]))
        channels = {o.name: o.shape[1] for o in self.session.get_outputs()}
        self.keypoint_schema = model_schema(
            path, metadata.onnx_schema(file_metadata), [channels[name] for name in self.outputs], keypoint_schema
        )

    def __call__(self, images):
        heatmaps, pafs = self.session.run(self.outputs, {self.input_name: _to_nchw(images)})
        return _to_nhwc(heatmaps), _to_nhwc(pafs)


def _ort_session(path, model, options) -> ort.InferenceSession:
    """ONNX Runtime's CPU session of ``model`` (a path or the model's bytes), read from ``path``."""
    try:
        return ort.InferenceSession(model, options, providers=['CPUExecutionProvider'])
    except Exception as exc:  # ORT raises its own exception types for bad files
        raise ModelFileError(f'{path}: ONNX Runtime cannot load this model ({exc})') from exc


def flush_subnormal_initializers(path) -> tuple[int, str | bytes]:
    """(how many subnormal float32 weights were set to zero, the model for ONNX Runtime: ``path`` as a
    string when there were none or the ``onnx`` package (the export extra) is missing, else the
    flushed model's bytes).

    Why: ONNX Runtime computes with subnormal weights at microcode speed (OpenVINO flushes them to
    zero itself): a trained file holding them ran 2.7-2.9x slower on ONNX Runtime than without them
    (benchmarks/bench_backends.py). lwop_jax's own exports hold none
    (:func:`lwop_jax.checkpoints.export.flush_subnormal_weights`); this covers files from elsewhere.
    Their products are below 1e-38, so outputs do not change.
    """
    try:  # the [export] extra; without it the file runs as it is
        import onnx
        from onnx import numpy_helper
    except ImportError:
        return 0, str(path)
    try:
        model = onnx.load(str(path))
    except Exception:  # not ONNX: ONNX Runtime's own loader says so, naming the file
        return 0, str(path)
    tiny, flushed = np.finfo(np.float32).tiny, 0
    for tensor in model.graph.initializer:
        if tensor.data_type != onnx.TensorProto.FLOAT:
            continue
        values = numpy_helper.to_array(tensor)
        subnormal = (values != 0) & (np.abs(values) < tiny)
        if subnormal.any():
            flushed += int(subnormal.sum())
            tensor.CopyFrom(numpy_helper.from_array(np.where(subnormal, np.float32(0), values), tensor.name))
    return (flushed, model.SerializeToString()) if flushed else (0, str(path))


class OpenVinoBackend:
    """OpenVINO on ``device``: fp32 (also on CPUs where OpenVINO would pick bf16 by itself), bf16 (its
    precision hint, where the CPU has bf16), or int8 from a quantized file (``precision``: see
    :func:`lwop_jax.inference.precision.resolve`; None: the file's tag). Reads .xml IR and .onnx."""

    name = 'openvino'

    def __init__(
        self, path, threads: int | None = None, device: str = 'CPU', precision: str | None = None, keypoint_schema=None
    ):
        import openvino as ov  # the [openvino] extra

        core = ov.Core()
        try:
            model = core.read_model(str(path))
        except Exception as exc:
            raise ModelFileError(f'{path}: OpenVINO cannot load this model ({exc})') from exc
        self.precision = precisions.resolve(
            path,
            self.name,
            precision,
            metadata.openvino_precision(model),
            bf16_available=precisions.openvino_bf16_available(core, device),
        )
        # Always an explicit hint: without one OpenVINO computes in bf16 on CPUs that have it (AMX).
        config: dict[str, str | int] = {'INFERENCE_PRECISION_HINT': precisions.OPENVINO_HINTS[self.precision]}
        if threads:
            config['INFERENCE_NUM_THREADS'] = threads
        try:
            self.compiled = core.compile_model(model, device, config)
        except Exception as exc:
            raise ModelFileError(f'{path}: OpenVINO cannot load this model ({exc})') from exc
        names = [o.get_any_name() for o in self.compiled.outputs]
        heatmaps, pafs = _last_stage_names(names)
        self.outputs = [self.compiled.outputs[names.index(heatmaps)], self.compiled.outputs[names.index(pafs)]]
        self.request = self.compiled.create_infer_request()
        channels = [output.get_partial_shape()[1] for output in self.outputs]
        self.keypoint_schema = model_schema(
            path,
            metadata.openvino_schema(model),
            [c.get_length() if c.is_static else None for c in channels],
            keypoint_schema,
        )

    def __call__(self, images):
        result = self.request.infer({0: _to_nchw(images)})
        return _to_nhwc(result[self.outputs[0]]), _to_nhwc(result[self.outputs[1]])


class JaxBackend:
    """The JAX model itself, fp32 only (``precision`` other than fp32 is refused)."""

    name = 'jax'

    def __init__(
        self,
        model_or_path,
        num_refinement_stages: int | None = None,
        precision: str | None = None,
        keypoint_schema=None,
    ):
        self.precision = precisions.resolve(model_or_path, self.name, precision, None)
        # The [jax] extra; the ONNX Runtime and OpenVINO paths never load it.
        import jax
        from flax import nnx

        from lwop_jax.checkpoints import orbax_io

        if isinstance(model_or_path, (str, os.PathLike)):
            model = orbax_io.load_any(model_or_path, num_refinement_stages=num_refinement_stages)
        else:
            model = model_or_path
        self.model = model
        self.keypoint_schema = model_schema(
            model_or_path,
            getattr(model, 'keypoint_schema', None) or load_schema(),
            [model.num_heatmaps, model.num_pafs],
            keypoint_schema,
        )
        # Weights are an argument, not constants baked into the program: compiling stays fast and
        # one compiled function serves any weights of the same architecture (e.g. during training).
        graphdef, self.state = nnx.split(model)
        self._forward = jax.jit(lambda state, x: nnx.merge(graphdef, state)(x)[-1])  # one compile per shape

    def __call__(self, images):
        heatmaps, pafs = self._forward(self.state, np.asarray(images, np.float32))
        return np.asarray(heatmaps), np.asarray(pafs)


def model_schema(path, stored, head_channels, override=None) -> KeypointSchema:
    """The keypoint schema a model runs with: ``override`` (a KeypointSchema, a shipped name or a schema file)
    or the one its file stores (``stored``: a KeypointSchema or its JSON object; None: coco18, the original's),
    checked against the file's head channels [heatmaps, PAFs] (None where the file leaves them open)."""
    if override is not None:
        schema = override if isinstance(override, KeypointSchema) else load_schema(override)
    elif stored is None:
        schema = load_schema()
    else:
        schema = stored if isinstance(stored, KeypointSchema) else schema_from_json(stored, f'{path} (keypoint schema)')
    wanted = [schema.num_heatmaps, schema.num_pafs]
    if any(isinstance(have, int) and have != want for have, want in zip(head_channels, wanted)):
        raise ModelFileError(
            f'{path}: its heads ({head_channels[0]} heatmaps, {head_channels[1]} PAFs) do not fit the keypoint '
            f'schema {schema.name!r} ({wanted[0]} heatmaps, {wanted[1]} PAFs)'
        )
    return schema


BACKENDS = {cls.name: cls for cls in (OnnxRuntimeBackend, OpenVinoBackend, JaxBackend)}


def default_backend_for(path) -> str:
    suffix = pathlib.Path(path).suffix.lower()
    if suffix in OPENVINO_SUFFIXES:
        return 'openvino'
    if suffix in ONNX_SUFFIXES:
        return 'onnxruntime'
    return 'jax'


def converted_onnx(path, num_refinement_stages: int | None = None) -> pathlib.Path:
    """ONNX export of a torch checkpoint or orbax folder, made once and cached by content and lwop_jax version."""
    path = pathlib.Path(path)
    digest = hashlib.sha256()
    files = sorted(p for p in path.rglob('*') if p.is_file()) if path.is_dir() else [path]
    for file in files:
        digest.update(str(file.relative_to(path) if path.is_dir() else file.name).encode())
        digest.update(file.read_bytes())
    digest.update(str(num_refinement_stages).encode())
    digest.update(lwop_jax.__version__.encode())  # a new version may export differently: export again
    target = cache_dir() / 'onnx' / f'{path.stem}-{digest.hexdigest()[:16]}.onnx'
    if not target.exists():
        from lwop_jax.checkpoints import export, orbax_io  # the [export] extra: jax, jax2onnx

        model = orbax_io.load_any(path, num_refinement_stages=num_refinement_stages)
        export.export_onnx(model, target)
    return target


def resolve_model_path(path) -> pathlib.Path:
    """An existing file or folder, or a published model's name (e.g. 'coco-370k'), downloaded once."""
    try:
        return hub.resolve_checkpoint(path)
    except FetchError as exc:
        raise ModelFileError(str(exc)) from exc


def load_backend(
    path,
    backend: str | None = None,
    *,
    threads: int | None = None,
    num_refinement_stages: int | None = None,
    precision: str | None = None,
    keypoint_schema=None,
):
    """Opens ``path`` (.onnx, .xml, torch .pth, orbax folder, or a published model's name) with ``backend``
    (default: by file type) at ``precision`` (fp32, bf16, int8; None: the file's tag, else fp32); the
    backend's ``precision`` attribute says what it runs at, its ``keypoint_schema`` the model's keypoints
    (the file's; ``keypoint_schema``, a KeypointSchema, a shipped name or a schema file, overrides it)."""
    path = resolve_model_path(path)
    backend = backend or default_backend_for(path)
    if backend not in BACKENDS:
        raise ModelFileError(f'unknown backend {backend!r}; choose one of {", ".join(BACKENDS)}')
    is_graph = path.suffix.lower() in ONNX_SUFFIXES + OPENVINO_SUFFIXES
    if backend == 'jax':
        if is_graph:
            raise ModelFileError(
                f'{path}: the JAX backend needs a torch checkpoint or an orbax folder, not an exported graph'
            )
        precisions.resolve(path, backend, precision, None)  # before loading: a refusal costs nothing
        return JaxBackend(path, num_refinement_stages, precision, keypoint_schema)
    if not is_graph:
        path = converted_onnx(path, num_refinement_stages)
    elif backend == 'onnxruntime' and path.suffix.lower() in OPENVINO_SUFFIXES:
        raise ModelFileError(f'{path}: ONNX Runtime cannot read OpenVINO IR; use --backend openvino')
    runtime = OnnxRuntimeBackend if backend == 'onnxruntime' else OpenVinoBackend
    return runtime(path, threads=threads, precision=precision, keypoint_schema=keypoint_schema)
