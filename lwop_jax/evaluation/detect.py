"""The original val.py inference for one image: scales, flip, maps on the image grid, decoding, COCO results.

Per image: for each scale, ``preprocess_val`` (normalise, INTER_CUBIC resize, pad), the network's last
stage, ``upsample_val_maps`` (x8, crop the pad, resize to the image); the maps are averaged over scales
(and, with ``flip``, over the mirrored image, its maps un-mirrored first); then ``decode`` and the COCO
conversion. NumPy and OpenCV only.
"""

from __future__ import annotations

import functools

import numpy as np

from lwop_jax.inference.decode import decode, to_coco_keypoints
from lwop_jax.inference.preprocess import STRIDE, VAL_BASE_HEIGHT, preprocess_val, upsample_val_maps
from lwop_jax.schema import KeypointSchema, load_schema
from lwop_jax.skeleton import COCO_KEYPOINT_NAMES

MULTISCALE = (0.5, 1.0, 1.5, 2.0)  # val.py --multiscale


@functools.lru_cache
def flip_tables(schema: KeypointSchema | None = None) -> tuple[tuple[int, ...], tuple[int, ...], np.ndarray]:
    """(heatmap channel order, PAF channel order, PAF signs) that turn the maps of a mirrored image into
    the image's maps, for a keypoint schema (None: coco18).

    Heatmap channel k of an image is channel flip[k] of its mirror (the background stays). Training limb
    i = (a, b) becomes limb j = (flip[a], flip[b]) in the mirror; mirroring negates x, and a limb stored
    the other way round, (flip[b], flip[a]), negates both components. ValueError when a limb's mirror is
    not a limb (the flip test needs a mirror-symmetric skeleton).
    """
    schema = schema or load_schema()
    flip, limbs = schema.flip_permutation, schema.training_limbs
    mirrored_limbs = []
    for a, b in limbs:
        mirrored = (flip[a], flip[b])
        if mirrored in limbs:
            mirrored_limbs.append((limbs.index(mirrored), 1.0))
        elif mirrored[::-1] in limbs:
            mirrored_limbs.append((limbs.index(mirrored[::-1]), -1.0))
        else:
            names = schema.keypoints
            raise ValueError(
                f'schema {schema.name!r}: limb {names[a]}-{names[b]} has no mirror limb; the flip test needs one'
            )
    heatmap_order = tuple(flip) + (len(flip),)
    paf_order = tuple(c for j, _ in mirrored_limbs for c in (2 * j, 2 * j + 1))
    signs = np.array([s * f for _, s in mirrored_limbs for f in (-1.0, 1.0)], np.float32)
    return heatmap_order, paf_order, signs


def unflip_maps(heatmaps, pafs, schema: KeypointSchema | None = None):
    """Maps of a mirrored image -> maps of the image: mirror x, swap left/right keypoint channels and
    limbs, negate the PAF x components. Its own inverse.

    heatmaps: (H, W, K + 1); pafs: (H, W, 2 L) (coco18: 19, 38). Returns new float32 arrays of the same
    shapes.
    """
    heatmap_order, paf_order, signs = flip_tables(schema)
    heatmaps = np.ascontiguousarray(heatmaps[:, ::-1, list(heatmap_order)], dtype=np.float32)
    pafs = np.ascontiguousarray(pafs[:, ::-1, list(paf_order)] * signs, dtype=np.float32)
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


def infer_maps(backend, image, base_height=VAL_BASE_HEIGHT, scales=(1,), flip=False, stride=STRIDE, schema=None):
    """val.py infer: maps averaged over scales (and over the mirrored image with flip).

    image: (H, W, 3) uint8 BGR. backend: callable (1, Hp, Wp, 3) float32 -> last-stage maps NHWC.
    Returns (heatmaps (H, W, K + 1), pafs (H, W, 2 L)) float32 (``schema``'s K and L; coco18: 19, 38).
    Without flip the sum is formed as the original forms it (float32 zeros + maps / n, scale by scale),
    so single-scale maps are unchanged.
    """
    passes = [(scale, mirrored) for scale in scales for mirrored in ((False, True) if flip else (False,))]
    mirror = np.ascontiguousarray(image[:, ::-1]) if flip else None
    height, width = image.shape[:2]
    schema = schema or load_schema()
    avg_heatmaps = np.zeros((height, width, schema.num_heatmaps), np.float32)
    avg_pafs = np.zeros((height, width, schema.num_pafs), np.float32)
    for scale, mirrored in passes:
        heatmaps, pafs = network_maps(backend, mirror if mirrored else image, base_height, scale, stride)
        if mirrored:
            heatmaps, pafs = unflip_maps(heatmaps, pafs, schema)
        avg_heatmaps = avg_heatmaps + heatmaps / len(passes)
        avg_pafs = avg_pafs + pafs / len(passes)
    return avg_heatmaps, avg_pafs


def detect_poses(backend, image, base_height=VAL_BASE_HEIGHT, scales=(1,), flip=False, stride=STRIDE, schema=None):
    """Decoded people of one image (decode.Poses, keypoints (N, K, 3) in image pixels); ``schema``: the
    model's keypoint schema (None: the backend's ``keypoint_schema``, else coco18)."""
    schema = schema or getattr(backend, 'keypoint_schema', None)
    return decode(*infer_maps(backend, image, base_height, scales, flip, stride, schema), schema=schema)


def coco_results(poses, image_id, category_id=1, schema=None, dataset_names=COCO_KEYPOINT_NAMES) -> list:
    """Poses -> COCO result dicts as val.py writes them: keypoints are 3 D numbers in the dataset's order
    (``dataset_names``; COCO: 51), (x + 0.5, y + 0.5, 1) per found keypoint and integer (0, 0, 0) for a
    missing one; score = pose score x (count - 1)."""
    keypoints, scores = to_coco_keypoints(poses, schema, dataset_names)
    results = []
    for person, score in zip(keypoints.reshape(-1, len(dataset_names), 3), scores):
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
