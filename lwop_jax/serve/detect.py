"""One image's bytes -> people, on a worker's own estimator, and the record the service answers with.

The record is the per-image record of ``lwop infer --json`` (its header, :func:`lwop_jax.inference.runs.
json_header`, then ``height``, ``width`` and ``people`` from :meth:`PoseResult.to_json`), plus ``timing_ms``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import cv2
import numpy as np

from lwop_jax.errors import LwopError
from lwop_jax.inference.estimator import PoseEstimator
from lwop_jax.inference.results import PoseResult
from lwop_jax.inference.runs import json_header
from lwop_jax.serve.limits import RequestError


@dataclass(frozen=True)
class Detection:
    """People in one image (untracked: tracking belongs to a stream's connection) and where time went."""

    result: PoseResult
    timing_ms: dict[str, float]

    @property
    def size(self) -> tuple[int, int]:
        return self.result.image_size  # (height, width)


def detect_bytes(estimator: PoseEstimator, data: bytes, net_height: int) -> Detection:
    """Decodes an image file's bytes (its header already checked by :meth:`Service.detect`) and finds the
    people in it; RequestError 400 when OpenCV cannot decode it or the estimator refuses it. Runs in a pool
    worker, which owns ``estimator``: nothing else uses it meanwhile, so setting its height per request is
    safe."""
    start = time.perf_counter()
    # IMREAD_COLOR as `lwop infer` reads files (cv2.imread): gray and 16-bit become 8-bit BGR, EXIF applied.
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if image is None or image.size == 0:
        raise RequestError(400, 'image data is damaged: OpenCV cannot decode it')
    decoded = time.perf_counter()
    estimator.net_height = net_height
    try:
        batch, geometry = estimator.preprocess(image)
    except LwopError as exc:
        raise RequestError(400, str(exc)) from exc
    prepared = time.perf_counter()
    heatmaps, pafs = estimator.run(batch)
    ran = time.perf_counter()
    result = estimator.postprocess(heatmaps[0], pafs[0], geometry)
    done = time.perf_counter()
    timing = {
        'decode': decoded - start,
        'preprocess': prepared - decoded,
        'network': ran - prepared,
        'postprocess': done - ran,
    }
    return Detection(result, {name: round(seconds * 1000, 3) for name, seconds in timing.items()})


def image_record(estimator: PoseEstimator, model_name: str, net_height: int, detection: Detection, result=None):
    """The answer for one image: ``lwop infer --json``'s header and image record (``result``: the tracked
    result of a stream frame, else the detection's own) plus ``timing_ms``."""
    result = detection.result if result is None else result
    height, width = detection.size
    record = json_header(estimator, model_name, net_height)
    record.update({'height': height, 'width': width, 'people': result.to_json()})
    record['timing_ms'] = dict(detection.timing_ms)
    return record
