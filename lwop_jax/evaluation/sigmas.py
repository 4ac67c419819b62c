"""OKS sigmas for scoring a keypoint schema's detections against a COCO-format dataset with COCOeval.

NumPy and the standard library only.
"""

from __future__ import annotations

import numpy as np

from lwop_jax.skeleton import COCO_KEYPOINT_NAMES


def keypoint_category_names(dataset) -> tuple[str, ...]:
    """The keypoint names of the (first) category with keypoints, in the dataset's order."""
    return tuple(next(c['keypoints'] for c in dataset['categories'] if 'keypoints' in c))


def schema_sigmas(schema, dataset) -> tuple[np.ndarray | None, dict]:
    """(OKS sigmas in the dataset's keypoint order, the ground truth to score) for a keypoint schema.

    None (COCOeval's own sigmas, the original's evaluation) for coco18 and COCO's 17 keypoints. Otherwise
    the schema's sigma of each dataset keypoint it predicts directly; keypoints it does not predict (and
    the inputs of derived ones) get their labels hidden (v = 0) in a copy of the dataset, so they do not
    count, and a placeholder sigma of 1.
    """
    names = keypoint_category_names(dataset)
    if schema is None or (schema.name == 'coco18' and names == COCO_KEYPOINT_NAMES):
        return None, dataset
    direct = schema.dataset_layout(names, 'the evaluation labels').direct
    sigmas = np.ones(len(names))
    # Written in tenths and divided, as COCOeval writes its own, so that equal values are equal bits.
    tenths = np.round(np.asarray(schema.sigmas, np.float64) * 10, 10)
    for own, index in enumerate(direct):
        if index >= 0:
            sigmas[index] = tenths[own] / 10.0
    hidden = [index for index in range(len(names)) if index not in direct]
    if hidden:
        dataset = dict(dataset, annotations=[_hide(a, hidden) for a in dataset['annotations']])
    return sigmas, dataset


def _hide(annotation: dict, hidden: list[int]) -> dict:
    if 'keypoints' not in annotation:
        return annotation
    keypoints = list(annotation['keypoints'])
    for index in hidden:
        keypoints[3 * index : 3 * index + 3] = [0, 0, 0]
    return dict(annotation, keypoints=keypoints, num_keypoints=sum(1 for v in keypoints[2::3] if v > 0))
