"""Int8 quantization behind an accuracy gate: calibrate, compare with the fp32 model, then keep or refuse.

:func:`quantize_with_gate` quantizes an fp32 ONNX file for ONNX Runtime (QDQ) or OpenVINO (NNCF) on the
calibration images (:mod:`lwop_jax.checkpoints.quantize`), runs the fp32 and the int8 model on the same
images (:func:`lwop_jax.evaluation.compare.compare_backends`: people found, keypoint agreement = mean OKS of
the int8 poses against the fp32 ones; with COCO labels also both APs), prints the figures, and writes the
int8 model only when agreement >= ``min_agreement`` and (with labels) AP drop <= ``max_ap_drop``; otherwise
it raises :class:`~lwop_jax.errors.AccuracyGateError` naming the numbers, and nothing is written.

Defaults, measured with the reference overfit checkpoint (``benchmarks/bench_precision.py``): a sound
quantization agrees 0.98-0.99 with fp32 on the four COCO mini images and 0.64-0.73 on synthetic people
(whose poses this 4-image model barely knows, so small changes move them), bf16 0.95-1.0; a quantization
calibrated on a single blank image agrees 0.0-0.30 (AP 0.76 -> 0.00-0.07). :data:`MIN_AGREEMENT` 0.5 sits
between; :data:`MAX_AP_DROP` 0.02 admits the quantizations with the last heads in float (drop 0.002-0.018)
and refuses those with every layer in int8 (0.023-0.044). Calibration images on which the fp32 model finds
nobody are refused outright: on them any model agrees.
"""

from __future__ import annotations

import pathlib
import tempfile
from dataclasses import dataclass

from lwop_jax.errors import AccuracyGateError, InputFileError
from lwop_jax.evaluation import coco_eval
from lwop_jax.evaluation.compare import Comparison, compare_backends, labelled_images, side_by_side
from lwop_jax.inference.backends import load_backend
from lwop_jax.inference.media import IMAGE_SUFFIXES, read_image

MIN_AGREEMENT = 0.5
MAX_AP_DROP = 0.02
MAX_CALIBRATION_IMAGES = 100
RUNTIMES = ('onnxruntime', 'openvino')


@dataclass
class CalibrationSet:
    """The calibration images: [(image_id, path)], their BGR arrays, and the COCO labels (or None)."""

    source: pathlib.Path
    images: list
    arrays: list
    dataset: dict | None = None


def calibration_set(folder, labels=None, max_images: int | None = MAX_CALIBRATION_IMAGES) -> CalibrationSet:
    """The readable images of ``folder`` (sorted; with ``labels``, a COCO keypoints JSON, those it names), at
    most ``max_images``, spread evenly over them (see :func:`spread_first`). Raises InputFileError for a
    missing folder or one without a readable image."""
    folder = pathlib.Path(folder)
    if not folder.is_dir():
        raise InputFileError(f'{folder}: calibration images folder not found')
    dataset = coco_eval.load_annotations(labels) if labels is not None else None
    if dataset is not None:
        candidates = labelled_images(dataset, folder)
        if not candidates:
            raise InputFileError(f'{folder}: none of the {len(dataset["images"])} images of {labels} is here')
    else:
        files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        candidates = list(enumerate(files))
    images, arrays, tried = [], [], 0
    for image_id, path in spread_first(candidates, max_images):
        if max_images is not None and len(images) >= max_images:
            break
        tried += 1
        try:
            arrays.append(read_image(path))
        except InputFileError:
            continue  # the count of readable images is what matters; none at all is the error below
        images.append((image_id, path))
    if not images:
        raise InputFileError(f'{folder}: no readable image ({tried} image files tried)')
    return CalibrationSet(folder, images, arrays, dataset)


def spread_first(items: list, count: int | None) -> list:
    """``items`` reordered so that ``count`` of them, spread evenly from the first to the last, come first
    (in order), then the others (in order: they stand in for unreadable ones).

    Why: a folder is often a sequence (video frames, a dataset sorted by id); its first ``count`` files
    would show only its beginning. On the demo's synthetic set, four blocks of 100 consecutive
    calibration images gave held-out int8 AP 0.406-0.415 (fp32 0.417).
    """
    if count is None or count >= len(items):
        return list(items)
    picked = [round(i * (len(items) - 1) / max(1, count - 1)) for i in range(count)]
    chosen = set(picked)
    return [items[k] for k in picked] + [item for k, item in enumerate(items) if k not in chosen]


def check_gate(comparison: Comparison, output, min_agreement: float, max_ap_drop: float) -> None:
    """Raises AccuracyGateError naming the figures when the int8 model is not good enough."""
    problems = []
    agreement = comparison.agreement
    if agreement.people_a == 0:
        # Agreement on empty images is perfect and proves nothing: a blank calibration set would pass.
        problems.append(
            f'the fp32 model finds nobody on the {agreement.images} calibration image(s), so they cannot show '
            'whether int8 still finds people; calibrate on images with people'
        )
    elif agreement.value < min_agreement:
        problems.append(
            f'keypoint agreement {agreement.value:.3f} < {min_agreement:.3f} (--min-agreement; people found: '
            f'fp32 {agreement.people_a}, int8 {agreement.people_b})'
        )
    drop = comparison.ap_drop
    if drop is not None and drop > max_ap_drop:
        problems.append(
            f'AP {comparison.stats_a["AP"]:.3f} -> {comparison.stats_b["AP"]:.3f}, '
            f'drop {drop:.3f} > {max_ap_drop:.3f} (--max-ap-drop)'
        )
    if problems:
        raise AccuracyGateError(f'{output}: int8 model refused, nothing written: {"; ".join(problems)}')


def quantize_with_gate(
    fp32_onnx,
    runtime: str,
    output,
    calibration: CalibrationSet,
    *,
    keep_fp32: str = 'last-heads',
    min_agreement: float = MIN_AGREEMENT,
    max_ap_drop: float = MAX_AP_DROP,
    threads: int | None = None,
    report=print,
) -> pathlib.Path:
    """Quantizes ``fp32_onnx`` for ``runtime`` ('onnxruntime': ``output`` is the .onnx file; 'openvino':
    ``output`` is a folder, the IR is ``<output>/<stem>.xml``), gates it (see the module docstring) and
    writes it. ``report`` gets the figures, one line each. Returns the written path."""
    import onnx  # the [export] extra, as quantizing needs

    from lwop_jax.checkpoints import quantize  # onnx and onnxruntime.quantization (the [export] extra)

    if runtime not in RUNTIMES:
        raise ValueError(f'runtime must be one of {RUNTIMES}, not {runtime!r}')
    fp32_onnx = pathlib.Path(fp32_onnx)
    kept = quantize.last_stage_heads(onnx.load(str(fp32_onnx), load_external_data=False), keep_fp32)
    inputs = quantize.calibration_inputs(calibration.arrays)
    record = {
        'method': quantize.ONNX_METHOD if runtime == 'onnxruntime' else quantize.OPENVINO_METHOD,
        'calibration_images': len(calibration.images),
        'calibration_inputs': len(inputs),
        'kept_fp32': kept,
    }
    with tempfile.TemporaryDirectory(prefix='lwop_int8_') as work:
        if runtime == 'onnxruntime':
            candidate = quantize.quantize_onnx(fp32_onnx, pathlib.Path(work) / 'int8.onnx', inputs, kept, record)
        else:
            candidate = quantize.quantize_openvino(fp32_onnx, pathlib.Path(work) / 'int8.xml', inputs, kept, record)
        reference = load_backend(fp32_onnx, runtime, threads=threads, precision='fp32')
        quantized = load_backend(candidate, runtime, threads=threads, precision='int8')
        comparison = compare_backends(reference, quantized, calibration.images, calibration.dataset)
        report(f'int8 ({runtime}) against fp32 on {len(comparison.image_ids)} calibration images:')
        report(side_by_side(comparison, 'fp32', 'int8'))
        check_gate(comparison, output, min_agreement, max_ap_drop)
        record['gate'] = {
            'agreement': round(comparison.agreement.value, 4),
            'people_fp32': comparison.agreement.people_a,
            'people_int8': comparison.agreement.people_b,
            'ap_fp32': None if comparison.stats_a is None else round(comparison.stats_a['AP'], 4),
            'ap_int8': None if comparison.stats_b is None else round(comparison.stats_b['AP'], 4),
            'min_agreement': min_agreement,
            'max_ap_drop': max_ap_drop,
        }
        if runtime == 'onnxruntime':
            return quantize.retag_onnx(candidate, output, record)
        return quantize.retag_openvino(candidate, pathlib.Path(output) / f'{fp32_onnx.stem}.xml', record)


__all__ = ['MIN_AGREEMENT', 'MAX_AP_DROP', 'CalibrationSet', 'calibration_set', 'check_gate', 'quantize_with_gate']
