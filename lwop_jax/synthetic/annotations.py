"""COCO annotations of a rendered image: keypoint flags, polygons, boxes, RLE and the annotation dicts.

The keypoint flags are read off the masks the scene paints (each person's part map and the image's
figure map, in depth order):

* v = 0: outside the image (and then x = y = 0, as COCO does);
* v = 1: inside the image but covered by a nearer person (drawn later), by another part of the same
  person (the far arm behind the torso, the far shoulder in profile), or on the far side of the head
  (the nose of a person seen from the back);
* v = 2: otherwise, i.e. the pixel under the keypoint shows a part the keypoint belongs to.

The keypoints are those of a dataset skeleton (:mod:`~lwop_jax.synthetic.dataset_skeleton`; default
COCO's 17), in its order.

A crowd is one ``iscrowd`` 1 region (uncompressed RLE of its visible pixels, num_keypoints 0), as
COCO does. OpenCV and NumPy.
"""

import math

import cv2
import numpy as np

from lwop_jax.skeleton import NUM_COCO_KEYPOINTS
from lwop_jax.synthetic.dataset_skeleton import COCO17

CATEGORY = COCO17.category  # the default data set's category: COCO's person keypoints


def keypoint_flags(figure, label, figure_map, part_map, box, height, width, skeleton=COCO17):
    """(K, 3) [x, y, v] of the K keypoints of a dataset skeleton, in its order, with honest flags read off
    the masks (see the module docstring)."""
    x0, y0 = box[:2]
    indices, owners = skeleton.point_indices, skeleton.owners
    result = []
    for k, (x, y) in enumerate(np.round(figure.points[list(indices)], 2)):
        x, y = float(x), float(y)
        if not (0.0 <= x <= width - 1 and 0.0 <= y <= height - 1):
            result.append((0.0, 0.0, 0))
            continue
        column, row = int(math.floor(x + 0.5)), int(math.floor(y + 0.5))
        visible = (
            figure_map[row, column] == label
            and part_map[row - y0, column - x0] in owners[k]
            and not (indices[k] < NUM_COCO_KEYPOINTS and figure.faces_away[indices[k]])  # a face point
        )
        result.append((x, y, 2 if visible else 1))
    return result


def mask_polygons(mask, origin):
    """COCO polygons of a binary mask's outer contours.

    COCO polygons (pycocotools' rasteriser) see pixel i as the square [i, i + 1), while contours
    (and keypoints, and cv2 drawing) put pixel i's centre at i. The contour is traced on the mask
    upsampled 2 x and mapped back to run a quarter pixel inside the mask's outer pixel edges, so
    that the polygon rasterises back to (nearly) the same pixels even for 3-pixel-wide limbs.
    """
    doubled = cv2.resize(mask.astype(np.uint8), None, fx=2, fy=2, interpolation=cv2.INTER_NEAREST)
    contours, _ = cv2.findContours(doubled, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    origin = np.asarray(origin, dtype=np.float64)
    return [
        (contour.reshape(-1, 2) / 2 + 0.25 + origin).reshape(-1).tolist() for contour in contours if len(contour) >= 3
    ]


def mask_bbox(mask, origin=(0, 0)):
    rows, columns = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    x0, y0 = columns[0] + origin[0], rows[0] + origin[1]
    return [float(x0), float(y0), float(columns[-1] - columns[0] + 1), float(rows[-1] - rows[0] + 1)]


def rle_encode(mask):
    """Uncompressed COCO RLE (column-major run lengths, starting with a run of zeros)."""
    flat = np.asarray(mask, dtype=np.uint8).ravel(order='F')
    changes = np.flatnonzero(np.diff(flat)) + 1
    counts = np.diff(np.concatenate(([0], changes, [flat.size]))).tolist()
    if flat.size and flat[0]:
        counts = [0] + counts
    return {'counts': counts, 'size': [int(mask.shape[0]), int(mask.shape[1])]}


def person_annotation(image_id, keypoints, visible, box):
    bbox = mask_bbox(visible, box[:2])
    polygons = mask_polygons(visible, box[:2])
    if not polygons:  # slivers too thin for a contour of 3 points: fall back to the box
        x, y, w, h = bbox
        polygons = [[x, y, x + w, y, x + w, y + h, x, y + h]]
    return {
        'image_id': image_id,
        'category_id': 1,
        'iscrowd': 0,
        'keypoints': [v for point in keypoints for v in point],
        'num_keypoints': sum(1 for point in keypoints if point[2] > 0),
        'bbox': bbox,
        'area': int(visible.sum()),
        'segmentation': polygons,
    }


def crowd_annotation(image_id, region, num_keypoints=NUM_COCO_KEYPOINTS):
    return {
        'image_id': image_id,
        'category_id': 1,
        'iscrowd': 1,
        'keypoints': [0] * (3 * num_keypoints),
        'num_keypoints': 0,
        'bbox': mask_bbox(region),
        'area': int(region.sum()),
        'segmentation': rle_encode(region),
    }
