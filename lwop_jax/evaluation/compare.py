"""Two models on the same images, side by side: people found, keypoint agreement and (with labels) COCO AP.

Both run the original val.py path (:func:`lwop_jax.evaluation.detect.detect_poses`: base height 368, single
scale, x8 upsampling), one image at a time, so the AP is the one ``lwop evaluate`` gives each model alone
and the agreement (:mod:`lwop_jax.evaluation.agreement`) compares poses decoded the same way.
``lwop evaluate --compare`` and the int8 accuracy gate (:mod:`lwop_jax.evaluation.gate`) use it.
"""

from __future__ import annotations

import pathlib
from dataclasses import dataclass, field

import cv2
from tqdm import tqdm

from lwop_jax.errors import InputFileError
from lwop_jax.evaluation.agreement import Agreement
from lwop_jax.evaluation.coco_eval import STAT_NAMES, coco_keypoint_stats, keypoint_category_id
from lwop_jax.evaluation.detect import coco_results, detect_poses
from lwop_jax.inference.preprocess import VAL_BASE_HEIGHT


@dataclass
class Comparison:
    """What :func:`compare_backends` found. stats_*: COCOeval's 10 stats by name (None without labels)."""

    agreement: Agreement
    stats_a: dict | None = None
    stats_b: dict | None = None
    image_ids: list = field(default_factory=list)
    unreadable: list = field(default_factory=list)

    @property
    def ap_drop(self) -> float | None:
        """AP of A minus AP of B (positive: B is worse), or None without labels."""
        if self.stats_a is None or self.stats_b is None:
            return None
        return self.stats_a['AP'] - self.stats_b['AP']


def compare_backends(
    backend_a,
    backend_b,
    images,
    dataset: dict | None = None,
    *,
    base_height: int = VAL_BASE_HEIGHT,
    progress: bool = False,
) -> Comparison:
    """Runs both backends on ``images`` and compares them (see the module docstring).

    images: [(image_id, path)]; with ``dataset`` (a COCO person keypoints dict whose ``images`` hold those
    ids) each model's detections are also scored with COCOeval. Unreadable images are skipped and listed;
    none readable is an InputFileError.
    """
    agreement = Agreement()
    category_id = keypoint_category_id(dataset) if dataset is not None else 1
    detections_a: list = []
    detections_b: list = []
    evaluated, unreadable = [], []
    for image_id, path in tqdm(images, unit='img', desc='comparing', disable=not progress, dynamic_ncols=True):
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if image is None:
            unreadable.append(str(path))
            continue
        poses_a = detect_poses(backend_a, image, base_height)
        poses_b = detect_poses(backend_b, image, base_height)
        agreement.add(poses_a.keypoints, poses_b.keypoints)
        detections_a += coco_results(poses_a, image_id, category_id)
        detections_b += coco_results(poses_b, image_id, category_id)
        evaluated.append(image_id)
    if not evaluated:
        raise InputFileError(f'no image could be read ({len(unreadable)} unreadable: {", ".join(unreadable[:5])})')
    comparison = Comparison(agreement, image_ids=evaluated, unreadable=unreadable)
    if dataset is not None:
        comparison.stats_a = coco_keypoint_stats(dataset, detections_a, evaluated)[0]
        comparison.stats_b = coco_keypoint_stats(dataset, detections_b, evaluated)[0]
    return comparison


def side_by_side(comparison: Comparison, name_a: str, name_b: str) -> str:
    """The 10 COCO stats of both models in two columns (when scored), then the agreement line."""
    lines = []
    if comparison.stats_a is not None and comparison.stats_b is not None:
        width = max(len(name_a), len(name_b), 8)
        lines.append(f'{"":6} {name_a:>{width}} {name_b:>{width}} {"B - A":>7}')
        for stat in STAT_NAMES:
            a, b = comparison.stats_a[stat], comparison.stats_b[stat]
            lines.append(f'{stat:6} {a:{width}.3f} {b:{width}.3f} {b - a:+7.3f}')
    lines.append(comparison.agreement.summary(name_a, name_b))
    return '\n'.join(lines)


def labelled_images(dataset: dict, images_dir) -> list:
    """[(image_id, path)] of a COCO dataset's images that exist in ``images_dir`` (file order)."""
    folder = pathlib.Path(images_dir)
    return [(e['id'], folder / e['file_name']) for e in dataset['images'] if (folder / e['file_name']).is_file()]


__all__ = ['Comparison', 'compare_backends', 'side_by_side', 'labelled_images']
