"""The original val.py inference for one image: scales, flip, maps on the image grid, decoding, COCO results.

Per image: for each scale, ``preprocess_val`` (normalise, INTER_CUBIC resize, pad), the network's last
stage, ``upsample_val_maps`` (x8, crop the pad, resize to the image); the maps are averaged over scales
(and, with ``flip``, over the mirrored image, its maps un-mirrored first); then ``decode`` and the COCO
conversion. NumPy and OpenCV only.
"""

from __future__ import annotations

import numpy as np

from lwop_jax.inference.decode import decode, to_coco_keypoints
from lwop_jax.inference.preprocess import STRIDE, VAL_BASE_HEIGHT, preprocess_val, upsample_val_maps
from lwop_jax.skeleton import FLIP_KEYPOINTS, NUM_HEATMAPS, PAF_LIMBS

MULTISCALE = (0.5, 1.0, 1.5, 2.0)  # val.py --multiscale


def _flipped_limb_table():
    """For each training limb i = (a, b): the limb j = (flip[a], flip[b]) it becomes in a mirrored image,
    and the sign of its vector (-1 when PAF_LIMBS stores it as (flip[b], flip[a]))."""
    table = []
    for a, b in PAF_LIMBS:
        mirrored = (FLIP_KEYPOINTS[a], FLIP_KEYPOINTS[b])
        if mirrored in PAF_LIMBS:
            table.append((PAF_LIMBS.index(mirrored), 1.0))
        else:
            table.append((PAF_LIMBS.index(mirrored[::-1]), -1.0))
    return table


_FLIPPED_LIMBS = _flipped_limb_table()
# Heatmap channel k of an image is channel FLIP_KEYPOINTS[k] of its mirror; background stays.
HEATMAP_FLIP = tuple(FLIP_KEYPOINTS) + tuple(range(len(FLIP_KEYPOINTS), NUM_HEATMAPS))
PAF_FLIP = tuple(c for j, _ in _FLIPPED_LIMBS for c in (2 * j, 2 * j + 1))
# Mirroring negates x; a limb stored in the other direction negates both components.
PAF_FLIP_SIGN = np.array([s * f for _, s in _FLIPPED_LIMBS for f in (-1.0, 1.0)], np.float32)


def unflip_maps(heatmaps, pafs):
    """Maps of a mirrored image -> maps of the image: mirror x, swap left/right keypoint channels and
    limbs, negate the PAF x components. Its own inverse.

    heatmaps: (H, W, 19); pafs: (H, W, 38). Returns new float32 arrays of the same shapes.
    """
    heatmaps = np.ascontiguousarray(heatmaps[:, ::-1, list(HEATMAP_FLIP)], dtype=np.float32)
    pafs = np.ascontiguousarray(pafs[:, ::-1, list(PAF_FLIP)] * PAF_FLIP_SIGN, dtype=np.float32)
    return heatmaps, pafs


def network_maps(backend, image, base_height=VAL_BASE_HEIGHT, scale=1.0, stride=STRIDE):
    """One scale of val.py infer: image (H, W, 3) uint8 BGR -> (heatmaps (H, W, 19), pafs (H, W, 38))
    float32 on the image grid."""
    batch, geometry = preprocess_val(image, base_height, scale, stride)
    heatmaps, pafs = backend(batch)
    # Heatmaps and PAFs are resized separately, as in the original.
    return (
        upsample_val_maps(np.asarray(heatmaps)[0], geometry, stride),
        upsample_val_maps(np.asarray(pafs)[0], geometry, stride),
    )


def infer_maps(backend, image, base_height=VAL_BASE_HEIGHT, scales=(1,), flip=False, stride=STRIDE):
    """val.py infer: maps averaged over scales (and over the mirrored image with flip).

    image: (H, W, 3) uint8 BGR. backend: callable (1, Hp, Wp, 3) float32 -> last-stage maps NHWC.
    Returns (heatmaps (H, W, 19), pafs (H, W, 38)) float32. Without flip the sum is formed as the
    original forms it (float32 zeros + maps / n, scale by scale), so single-scale maps are unchanged.
    """
    passes = [(scale, mirrored) for scale in scales for mirrored in ((False, True) if flip else (False,))]
    mirror = np.ascontiguousarray(image[:, ::-1]) if flip else None
    height, width = image.shape[:2]
    avg_heatmaps = np.zeros((height, width, NUM_HEATMAPS), np.float32)
    avg_pafs = np.zeros((height, width, 2 * len(PAF_LIMBS)), np.float32)
    for scale, mirrored in passes:
        heatmaps, pafs = network_maps(backend, mirror if mirrored else image, base_height, scale, stride)
        if mirrored:
            heatmaps, pafs = unflip_maps(heatmaps, pafs)
        avg_heatmaps = avg_heatmaps + heatmaps / len(passes)
        avg_pafs = avg_pafs + pafs / len(passes)
    return avg_heatmaps, avg_pafs


def detect_poses(backend, image, base_height=VAL_BASE_HEIGHT, scales=(1,), flip=False, stride=STRIDE):
    """Decoded people of one image (decode.Poses, keypoints (N, 18, 3) in image pixels)."""
    return decode(*infer_maps(backend, image, base_height, scales, flip, stride))


def coco_results(poses, image_id, category_id=1) -> list:
    """Poses -> COCO result dicts as val.py writes them: keypoints are 51 numbers, (x + 0.5, y + 0.5, 1)
    per found keypoint and integer (0, 0, 0) for a missing one; score = pose score x (count - 1)."""
    keypoints, scores = to_coco_keypoints(poses)
    results = []
    for person, score in zip(keypoints.reshape(-1, 17, 3), scores):
        flat = []
        for x, y, v in person.tolist():
            flat.extend((x, y, 1) if v else (0, 0, 0))
        results.append({'image_id': image_id, 'category_id': category_id, 'keypoints': flat, 'score': float(score)})
    return results


def detect(
    backend, image, image_id, base_height=VAL_BASE_HEIGHT, scales=(1,), flip=False, stride=STRIDE, category_id=1
) -> list:
    """COCO result dicts for one image (H, W, 3) uint8 BGR, in the decoder's order."""
    return coco_results(detect_poses(backend, image, base_height, scales, flip, stride), image_id, category_id)
