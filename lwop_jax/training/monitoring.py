"""What a training run shows: TensorBoard scalars and heatmap pictures (process 0 only), and the periodic
COCO validation hook."""

from __future__ import annotations

import importlib.util
import logging
import pathlib
from collections.abc import Callable

import jax
import numpy as np

from lwop_jax.evaluation.coco_eval import evaluate_model

logger = logging.getLogger(__name__)


class Monitor:
    """TensorBoard event files (process 0 only) through ``tf.summary.scalar`` / ``tf.summary.image``; a
    no-op when disabled. ``tensorboard --logdir WORKDIR`` shows them (tensorboard is in the [train] extra)."""

    def __init__(self, workdir, enabled: bool):
        self.writer = None
        if enabled and jax.process_index() == 0:
            import tensorflow as tf  # the [train] extra; only process 0 with TensorBoard on loads it here

            tf.config.set_visible_devices([], 'GPU')  # TF must not take the accelerator's memory
            self._tf = tf
            self.writer = tf.summary.create_file_writer(str(pathlib.Path(workdir) / 'tensorboard'))

    def scalars(self, step: int, values: dict):
        if self.writer is not None:
            with self.writer.as_default(step=step):
                for name, value in values.items():
                    self._tf.summary.scalar(name, float(value))

    def image(self, step: int, name: str, image: np.ndarray):
        """``image``: (H, W, 3) floats in [0, 1]."""
        if self.writer is not None:
            pixels = np.clip(np.round(np.asarray(image) * 255), 0, 255).astype(np.uint8)
            with self.writer.as_default(step=step):
                self._tf.summary.image(name, pixels[None])

    def flush(self):
        if self.writer is not None:
            self.writer.flush()


def heatmap_panel(image, target_heatmaps, predicted_heatmaps, stride: int) -> np.ndarray:
    """One picture: input (subsampled to map size) | target keypoints | predicted keypoints, RGB [0, 1].

    Keypoint panels show the max over the 18 keypoint channels (the background channel left out).
    """
    bgr = np.clip(np.asarray(image)[::stride, ::stride] * 256 + 128, 0, 255) / 255
    h, w = target_heatmaps.shape[:2]
    rgb = bgr[:h, :w, ::-1]
    panels = [
        np.repeat(np.clip(np.max(np.asarray(m)[..., :-1], axis=-1), 0, 1)[..., None], 3, axis=-1)
        for m in (target_heatmaps, predicted_heatmaps)
    ]
    return np.concatenate([rgb] + panels, axis=1).astype(np.float32)


def default_evaluate_fn(config, workdir) -> Callable | None:
    """``model -> stats dict`` through lwop_jax.evaluation.coco_eval.evaluate_model, or None (logged) if unavailable."""
    if not config.val_labels:
        logger.info('validation off: no val_labels configured')
        return None
    if importlib.util.find_spec('pycocotools') is None:
        logger.warning('validation off: pycocotools is not installed (the [eval] extra)')
        return None
    output = str(pathlib.Path(workdir) / config.val_output_name) if config.val_output_name else None

    def evaluate(model):
        return evaluate_model(model, config.val_labels, config.val_images, output_path=output)

    return evaluate
