"""One call from a BGR image to people in image pixels: the original demo.py path.

    estimator = PoseEstimator('model.onnx')          # or .xml, a torch .pth, an orbax folder
    result = estimator(cv2.imread('people.jpg'))     # PoseResult, keypoints in image pixels

preprocess (resize to the net height, normalise, pad; :func:`lwop_jax.preprocess.preprocess_demo`)
-> run (the backend of :mod:`lwop_jax.runtime`, last stage) -> postprocess (x4 cubic upsampling,
:func:`lwop_jax.decode.decode`, mapping back to image pixels as run_demo does, missing keypoints
kept missing) -> optional tracking (:mod:`lwop_jax.tracking`).

CPU inference path: with ONNX Runtime or OpenVINO this imports neither jax nor tensorflow.
"""
from __future__ import annotations

import pathlib
from collections import defaultdict

import cv2
import numpy as np

from . import decode as decoder
from . import preprocess
from .results import PoseResult
from .runtime import load_backend
from .tracking import PoseTracker

# A very wide (or very short) image is resized to the net height, so its width grows by
# net_height / H; above this many network-input pixels per row it would need gigabytes.
MAX_WIDTH_PER_HEIGHT = 32


class ImageError(ValueError):
    """An image that cannot be used; the message says why in one line."""


# ------------------------------------------------------------------------------------------------
# Input conversion
# ------------------------------------------------------------------------------------------------

def _to_uint8(image: np.ndarray) -> np.ndarray:
    if image.dtype == np.uint8:
        return image
    if image.dtype == np.uint16:                 # 65535 / 257 = 255: full range to full range
        return ((image.astype(np.uint32) + 128) // 257).astype(np.uint8)
    if np.issubdtype(image.dtype, np.floating):  # 0..1 or 0..255? guessing would be silent harm
        raise ImageError(f'float images ({image.dtype}) are refused: the value range is ambiguous; '
                         'pass uint8 BGR 0..255 (e.g. (image * 255).round().astype(np.uint8))')
    raise ImageError(f'unsupported image dtype {image.dtype}: pass uint8 or uint16')


def _to_three_channels(image: np.ndarray) -> np.ndarray:
    channels = 1 if image.ndim == 2 else image.shape[2]
    if channels == 1:
        return cv2.cvtColor(image.reshape(image.shape[:2]), cv2.COLOR_GRAY2BGR)
    if channels == 3:
        return image
    if channels == 4:                            # alpha dropped, as cv2.imread(IMREAD_COLOR) does
        return cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    raise ImageError(f'image has {channels} channels: expected 1 (gray), 3 (BGR) or 4 (BGRA)')


def as_bgr8(image) -> np.ndarray:
    """Any common image array -> (H, W, 3) uint8 BGR.

    Accepts (H, W) and (H, W, 1) grayscale, (H, W, 3) BGR, (H, W, 4) BGRA (alpha dropped);
    uint8 as is, uint16 divided by 257 (rounded). Float images are refused (ImageError), since
    0..1 and 0..255 cannot be told apart. Colour arrays are taken as BGR (OpenCV order).
    """
    if image is None:
        raise ImageError('no image (None): was the file read?')
    image = np.asarray(image)
    if image.ndim not in (2, 3):
        raise ImageError(f'image must be (H, W), (H, W, 1), (H, W, 3) or (H, W, 4), got {image.shape}')
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise ImageError(f'image is empty (shape {image.shape})')
    return np.ascontiguousarray(_to_three_channels(_to_uint8(image)))


def read_image(path) -> np.ndarray:
    """Reads an image file as (H, W, 3) uint8 BGR, as the original demo (cv2 IMREAD_COLOR: gray
    and 16-bit files become 8-bit BGR, alpha is dropped, EXIF orientation is applied).

    Decodes from bytes so that OpenCV prints no warnings of its own; raises ImageError with one
    line naming the file for a missing, empty or undecodable file.
    """
    path = pathlib.Path(path)
    if not path.exists():
        raise ImageError(f'{path}: file not found')
    if path.is_dir():
        raise ImageError(f'{path}: is a folder, not an image')
    if path.stat().st_size == 0:
        raise ImageError(f'{path}: file is empty')
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except OSError as exc:
        raise ImageError(f'{path}: cannot be read ({exc.strerror or exc})') from exc
    image = cv2.imdecode(data, cv2.IMREAD_COLOR)
    if image is None or image.size == 0:
        raise ImageError(f'{path}: not an image OpenCV can decode')
    return image


# ------------------------------------------------------------------------------------------------
# The estimator
# ------------------------------------------------------------------------------------------------

class PoseEstimator:
    """Multi-person 2D pose estimation on BGR images.

    path:           model: .onnx, OpenVINO .xml, torch .pth checkpoint or orbax folder.
    backend:        'onnxruntime', 'openvino' or 'jax' (default: by file type, see runtime.py).
    net_height:     network input height (the original demo's --height-size, 256).
    threads:        CPU threads of the runtime (None: its default).
    upsample_ratio: map upsampling before decoding (the demo's 4).
    track, smooth:  give people ids that persist across calls (video frames) and One-Euro smooth
                    their keypoints; call :meth:`reset` between unrelated videos.
    """

    def __init__(self, path, backend: str | None = None, net_height: int = preprocess.DEMO_HEIGHT,
                 threads: int | None = None, upsample_ratio: int = preprocess.DEMO_UPSAMPLE_RATIO,
                 track: bool = False, smooth: bool = False):
        self.backend = load_backend(path, backend, threads=threads)
        self.net_height = int(net_height)
        self.upsample_ratio = int(upsample_ratio)
        self.tracker = PoseTracker(smooth=smooth) if track else None

    @property
    def backend_name(self) -> str:
        return self.backend.name

    def reset(self):
        """Forgets the tracked people (start of a new video)."""
        if self.tracker is not None:
            self.tracker.reset()

    # -- the three steps ----------------------------------------------------------------------

    def preprocess(self, image):
        """image (any form :func:`as_bgr8` accepts) -> (network input (1, Hp, Wp, 3) float32,
        InputGeometry)."""
        image = as_bgr8(image)
        height, width = image.shape[:2]
        if width > MAX_WIDTH_PER_HEIGHT * height:
            raise ImageError(f'image is {width}x{height} (WxH): wider than {MAX_WIDTH_PER_HEIGHT}:1, '
                             f'its network input would be {self.net_height} x '
                             f'{width * self.net_height // height} pixels')
        return preprocess.preprocess_demo(image, net_height=self.net_height)

    def run(self, batch: np.ndarray):
        """(N, Hp, Wp, 3) -> last-stage (heatmaps (N, h, w, 19), pafs (N, h, w, 38))."""
        return self.backend(batch)

    def postprocess(self, heatmaps: np.ndarray, pafs: np.ndarray, geometry) -> PoseResult:
        """One image's maps (h, w, 19), (h, w, 38) -> PoseResult in image pixels (untracked)."""
        heatmaps = preprocess.upsample_demo_maps(heatmaps, self.upsample_ratio)
        pafs = preprocess.upsample_demo_maps(pafs, self.upsample_ratio)
        poses = decoder.decode(heatmaps, pafs)
        keypoints = poses.keypoints.copy()
        found = keypoints[..., 2] > 0
        xy = preprocess.demo_keypoints_to_image(keypoints[..., :2], geometry,
                                                upsample_ratio=self.upsample_ratio)
        keypoints[..., :2] = np.where(found[..., None], xy, -1)
        return PoseResult.from_keypoints(keypoints, poses.scores, geometry.image_hw,
                                         num_keypoints=poses.num_keypoints)

    # -- public calls ---------------------------------------------------------------------------

    def __call__(self, image) -> PoseResult:
        """image: (H, W, 3) uint8 BGR (or gray / BGRA / uint16, see as_bgr8) -> PoseResult."""
        batch, geometry = self.preprocess(image)
        heatmaps, pafs = self.run(batch)
        return self._track(self.postprocess(heatmaps[0], pafs[0], geometry))

    def batch(self, images, max_batch_size: int = 8) -> list[PoseResult]:
        """Several images -> one PoseResult each, in order.

        Images whose network inputs have the same padded size go through the backend together
        (up to max_batch_size at a time); the others one by one. Tracking, when on, sees the
        results in the given order.
        """
        prepared = [self.preprocess(image) for image in images]
        by_shape = defaultdict(list)
        for index, (batch, _) in enumerate(prepared):
            by_shape[batch.shape].append(index)
        results = [None] * len(prepared)
        for indices in by_shape.values():
            for start in range(0, len(indices), max_batch_size):
                chunk = indices[start:start + max_batch_size]
                heatmaps, pafs = self.run(np.concatenate([prepared[i][0] for i in chunk]))
                for row, index in enumerate(chunk):
                    results[index] = self.postprocess(heatmaps[row], pafs[row], prepared[index][1])
        return [self._track(result) for result in results]

    def _track(self, result: PoseResult) -> PoseResult:
        return result if self.tracker is None else self.tracker(result)

