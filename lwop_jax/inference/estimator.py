"""One call from a BGR image to people in image pixels: the original demo.py path.

    estimator = PoseEstimator('model.onnx')          # or .xml, a torch .pth, an orbax folder
    result = estimator(cv2.imread('people.jpg'))     # PoseResult, keypoints in image pixels

preprocess (resize to the net height, normalise, pad; :func:`lwop_jax.inference.preprocess.preprocess_demo`)
-> run (the backend of :mod:`lwop_jax.inference.backends`, last stage) -> postprocess (x4 cubic upsampling,
:func:`lwop_jax.inference.decode.decode`, mapping back to image pixels as run_demo does, missing keypoints
kept missing) -> optional tracking (:mod:`lwop_jax.inference.tracking`).

CPU inference path: with ONNX Runtime or OpenVINO this imports neither jax nor tensorflow.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from lwop_jax.errors import InputFileError
from lwop_jax.inference import decode as decoder
from lwop_jax.inference import preprocess
from lwop_jax.inference.backends import load_backend
from lwop_jax.inference.media import as_bgr8
from lwop_jax.inference.results import PoseResult
from lwop_jax.inference.tracking import PoseTracker
from lwop_jax.schema import KeypointSchema

# A very wide (or very short) image is resized to the net height, so its width grows by
# net_height / H; above this many network-input pixels per row it would need gigabytes.
MAX_WIDTH_PER_HEIGHT = 32


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
    num_refinement_stages: keep this many refinement stages of a .pth or orbax model (None: all).
    precision:      'fp32', 'bf16' or 'int8' (None: the model file's tag, else fp32). bf16 is OpenVINO's
                    precision hint (fp32 with a warning on a CPU without bf16); int8 needs a quantized file
                    (``lwop convert --precision int8``). See :mod:`lwop_jax.inference.precision`.
    keypoint_schema: overrides the keypoint schema the model file carries (a KeypointSchema, a shipped name
                    or a schema file); needed only for a file written without one that is not coco18.
    """

    def __init__(
        self,
        path,
        backend: str | None = None,
        net_height: int = preprocess.DEMO_HEIGHT,
        threads: int | None = None,
        upsample_ratio: int = preprocess.DEMO_UPSAMPLE_RATIO,
        track: bool = False,
        smooth: bool = False,
        num_refinement_stages: int | None = None,
        precision: str | None = None,
        keypoint_schema=None,
    ):
        self.backend = load_backend(
            path,
            backend,
            threads=threads,
            num_refinement_stages=num_refinement_stages,
            precision=precision,
            keypoint_schema=keypoint_schema,
        )
        self.net_height = int(net_height)
        self.upsample_ratio = int(upsample_ratio)
        self.tracker = PoseTracker(smooth=smooth) if track else None

    @property
    def backend_name(self) -> str:
        return self.backend.name

    @property
    def schema(self) -> KeypointSchema:
        """The model's keypoint schema: names, limbs and sigmas of what it finds."""
        return self.backend.keypoint_schema

    @property
    def precision(self) -> str:
        """What the backend runs at: 'fp32', 'bf16' or 'int8'."""
        return self.backend.precision

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
            raise InputFileError(
                f'image is {width}x{height} (WxH): wider than {MAX_WIDTH_PER_HEIGHT}:1, '
                f'its network input would be {self.net_height} x '
                f'{width * self.net_height // height} pixels'
            )
        return preprocess.preprocess_demo(image, net_height=self.net_height)

    def run(self, batch: np.ndarray):
        """(N, Hp, Wp, 3) -> last-stage (heatmaps (N, h, w, K + 1), pafs (N, h, w, 2 L)); coco18: 19, 38."""
        return self.backend(batch)

    def postprocess(self, heatmaps: np.ndarray, pafs: np.ndarray, geometry) -> PoseResult:
        """One image's maps (h, w, K + 1), (h, w, 2 L) -> PoseResult in image pixels (untracked)."""
        heatmaps = preprocess.upsample_demo_maps(heatmaps, self.upsample_ratio)
        pafs = preprocess.upsample_demo_maps(pafs, self.upsample_ratio)
        poses = decoder.decode(heatmaps, pafs, schema=self.schema)
        keypoints = poses.keypoints.copy()
        found = keypoints[..., 2] > 0
        xy = preprocess.demo_keypoints_to_image(keypoints[..., :2], geometry, upsample_ratio=self.upsample_ratio)
        keypoints[..., :2] = np.where(found[..., None], xy, -1)
        return PoseResult.from_keypoints(
            keypoints, poses.scores, geometry.image_hw, num_keypoints=poses.num_keypoints, schema=self.schema
        )

    def track(self, result: PoseResult) -> PoseResult:
        """The tracked result (ids, smoothing) when tracking is on, else ``result`` itself. Call it once per
        frame, in frame order: the pipelined video run of :mod:`lwop_jax.inference.runs` does."""
        return result if self.tracker is None else self.tracker(result)

    def run_grouped(self, inputs, max_batch_size: int = 8) -> list[tuple[np.ndarray, np.ndarray]]:
        """Network inputs (1, Hp, Wp, 3) each -> their last-stage maps ((h, w, K + 1), (h, w, 2 L)), in order.

        Inputs of the same padded size go through the backend together, up to max_batch_size at a time;
        the others one by one. Batched maps may differ from single ones in the last bits (ONNX Runtime
        picks other kernels for other batch sizes).
        """
        by_shape = defaultdict(list)
        for index, batch in enumerate(inputs):
            by_shape[batch.shape].append(index)
        maps: list = [None] * len(inputs)  # every slot is set below
        for indices in by_shape.values():
            for start in range(0, len(indices), max_batch_size):
                chunk = indices[start : start + max_batch_size]
                heatmaps, pafs = self.run(np.concatenate([inputs[i] for i in chunk]))
                for row, index in enumerate(chunk):
                    maps[index] = heatmaps[row], pafs[row]
        return maps

    # -- public calls ---------------------------------------------------------------------------

    def __call__(self, image) -> PoseResult:
        """image: (H, W, 3) uint8 BGR (or gray / BGRA / uint16, see as_bgr8) -> PoseResult."""
        batch, geometry = self.preprocess(image)
        heatmaps, pafs = self.run(batch)
        return self.track(self.postprocess(heatmaps[0], pafs[0], geometry))

    def batch(self, images, max_batch_size: int = 8) -> list[PoseResult]:
        """Several images -> one PoseResult each, in order.

        Images whose network inputs have the same padded size go through the backend together
        (up to max_batch_size at a time, see :meth:`run_grouped`); the others one by one. Tracking,
        when on, sees the results in the given order.
        """
        prepared = [self.preprocess(image) for image in images]
        maps = self.run_grouped([batch for batch, _ in prepared], max_batch_size)
        return [
            self.track(self.postprocess(heatmaps, pafs, geometry))
            for (heatmaps, pafs), (_, geometry) in zip(maps, prepared)
        ]
