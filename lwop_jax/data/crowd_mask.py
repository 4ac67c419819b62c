"""The original ``datasets/coco.py::get_mask``: crowd regions zeroed in a full-resolution mask (quirk T5),
here also for polygons and compressed RLE, which the original does not read."""

import warnings

import numpy as np


def _decode_segmentation(segmentation, height, width):
    """One COCO segmentation (polygons, uncompressed or compressed RLE) -> (H, W) bool."""
    from pycocotools import mask as mask_utils  # imported here: only crowd masks need it

    if isinstance(segmentation, dict):
        size = segmentation.get('size')
        if size is not None and [int(s) for s in size] != [height, width]:
            raise ValueError(f'crowd RLE of size {list(size)} does not match the image ({height}, {width})')
        counts = segmentation['counts']
        if isinstance(counts, list):  # uncompressed RLE, the only form the original handles
            rle = mask_utils.frPyObjects(segmentation, height, width)
        else:  # compressed RLE string
            rle = {'size': [height, width], 'counts': counts.encode() if isinstance(counts, str) else counts}
    elif isinstance(segmentation, list):  # polygons [[x1, y1, x2, y2, ...], ...]: their union
        if not segmentation:
            return np.zeros((height, width), dtype=bool)
        rle = mask_utils.merge(mask_utils.frPyObjects(segmentation, height, width))
    else:
        raise ValueError(f'unsupported segmentation of type {type(segmentation).__name__}')
    with warnings.catch_warnings():
        # pycocotools 2.0.x's decode result predates NumPy 2's __array__(copy=...) protocol; the
        # warning is about its internals, not about this call.
        warnings.filterwarnings('ignore', message='__array__ implementation', category=DeprecationWarning)
        return mask_utils.decode(rle) > 0.5


def crowd_mask(segmentations, height, width):
    """The original ``get_mask`` on ``np.ones((H, W), float32)``: 1 = use, 0 = inside a crowd region.

    Args:
        segmentations: list of COCO segmentations (the label's 'segmentations').
    Returns:
        (H, W) float32.
    """
    mask = np.ones((height, width), dtype=np.float32)
    for segmentation in segmentations:
        mask[_decode_segmentation(segmentation, height, width)] = 0
    return mask
