"""Training augmentation of Lightweight OpenPose as ONE affine warp per sample (NumPy + OpenCV).

The original applies, after ``ConvertKeypoints``, four transforms in sequence
(``datasets/transformations.py``), each warping or copying the full image and mask:

1. ``Scale``:  ``s = target_dist / scale_provided * U(min_scale, max_scale)``, keypoints ``p * s``.
2. ``Rotate``: ``cv2.getRotationMatrix2D`` by ``(U(0, 1) - 0.5) * 2 * 40`` degrees about the centre
   ``(w_s / 2, h_s / 2)`` of the *scaled* image (``w_s = round(W * s)``, cv2.resize's output size),
   then translated so the rotated image fits a canvas of ``int(h_s |sin| + w_s |cos|)`` x
   ``int(h_s |cos| + w_s |sin|)``; border 128, mask border 1.
3. ``CropPad``: a 368 x 368 window whose top-left corner is ``int(objpos + offset - 184)`` (objpos
   after scale and rotation, ``offset = int((U(0, 1) - 0.5) * 2 * 40)`` per axis), pad 128, mask pad
   1; the mask is stored as uint8 there, so interpolated (blended) mask values truncate to 0.
4. ``Flip``:   with probability 0.5, ``x -> 367 - x`` (``cv2.flip``) and left/right keypoints swap.

Every step is an affine map of pixel coordinates, so here they are composed into one 2 x 3 matrix
``M = F @ C @ R @ S`` (3 x 3 homogeneous) and the image and the full-resolution mask are warped once
with ``cv2.warpAffine`` (OpenCV's pixel-centre convention: pixel (i, j) sits at coordinate (j, i),
the same convention in which the original moves its keypoints). Keypoints of all persons move with
the same matrix.

Differences from the original, all deliberate:

* Scale: the original moves keypoints by ``p * s`` but ``cv2.resize`` maps pixel centres by
  ``(p + 0.5) * s - 0.5``, so its image and keypoints disagree by ``0.5 (s - 1)`` px. Here image and
  keypoints use the keypoint formula, i.e. they agree exactly.
* Canvas edges: the original loses up to ~1 px of content at the far edges of the scaled and of the
  rotated canvas (integer canvas sizes); a single warp samples the source there instead.
* Flags: none of Scale/Rotate/CropPad/Flip changes a keypoint flag in the original (``CropPad`` has an
  unused ``_inside`` helper). Points that leave the crop keep their flag, and the target renderer
  clips their Gaussians and limbs to the map, exactly as the original does. We keep that.

Random draws come from a ``np.random.Generator``, in this order: scale, rotation, crop x, crop y, flip.
"""

import dataclasses
import math

import cv2
import numpy as np

from lwop_jax.skeleton import FLIP_KEYPOINTS


@dataclasses.dataclass(frozen=True)
class AugmentConfig:
    """The original's transform parameters (train.py defaults)."""

    crop_size: int = 368
    min_scale: float = 0.5
    max_scale: float = 1.1
    target_dist: float = 0.6
    max_rotate_degree: float = 40.0
    center_perturb_max: float = 40.0
    flip_prob: float = 0.5
    pad_value: int = 128
    mask_pad_value: float = 1.0


@dataclasses.dataclass(frozen=True)
class AffineParams:
    """One sample's drawn augmentation and the composed matrix.

    matrix: (2, 3) float64, original image pixels -> crop pixels (``M = F @ C @ R @ S``).
    """

    scale: float  # total scale s = scale_abs * scale_multiplier
    degree: float  # rotation angle, cv2 convention (counter-clockwise on screen)
    crop_offset: tuple  # (offset_left, offset_up): integer translation of CropPad
    flip: bool
    matrix: np.ndarray


# ------------------------------------------------------------------------- individual transforms
def scale_matrix(scale):
    """Scale: p -> s p. (3, 3)."""
    return np.array([[scale, 0.0, 0.0], [0.0, scale, 0.0], [0.0, 0.0, 1.0]])


def scaled_size(width, height, scale):
    """(w_s, h_s): cv2.resize's output size for fx = fy = scale (round half to even, as cvRound)."""
    return int(np.rint(width * scale)), int(np.rint(height * scale))


def rotate_matrix(width, height, degree):
    """Rotate of an image of size (width, height), canvas enlarged as the original does. (3, 3).

    ``cv2.getRotationMatrix2D((w/2, h/2), degree, 1)`` plus the shift to the canvas centre.
    """
    center_x, center_y = width / 2, height / 2
    radians = math.radians(degree)
    alpha, beta = math.cos(radians), math.sin(radians)
    rotation = np.array(
        [
            [alpha, beta, (1 - alpha) * center_x - beta * center_y],
            [-beta, alpha, beta * center_x + (1 - alpha) * center_y],
            [0.0, 0.0, 1.0],
        ]
    )
    bound_w = int(height * abs(beta) + width * abs(alpha))
    bound_h = int(height * abs(alpha) + width * abs(beta))
    rotation[0, 2] += bound_w / 2 - center_x
    rotation[1, 2] += bound_h / 2 - center_y
    return rotation


def crop_offset(objpos, perturb, crop_size):
    """CropPad's integer translation (offset_left, offset_up) for an objpos after scale/rotate.

    perturb: (offset_x, offset_y), the already truncated centre perturbation. int() truncates
    toward zero, as the original (also for negative values).
    """
    return tuple(-int(objpos[axis] + perturb[axis] - crop_size / 2) for axis in (0, 1))


def translate_matrix(offset):
    return np.array([[1.0, 0.0, offset[0]], [0.0, 1.0, offset[1]], [0.0, 0.0, 1.0]])


def flip_matrix(crop_size, flip):
    """Flip of a crop_size-wide image: x -> crop_size - 1 - x (identity when not flipping). (3, 3)."""
    if not flip:
        return np.eye(3)
    return np.array([[-1.0, 0.0, crop_size - 1.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])


def apply_affine(matrix, points):
    """Affine (2, 3) or (3, 3) matrix applied to (..., 2) points -> (..., 2) float64."""
    points = np.asarray(points, dtype=np.float64)
    return points @ matrix[:2, :2].T + matrix[:2, 2]


# ------------------------------------------------------------------------------------- sampling
def draw_parameters(rng, config=AugmentConfig()):
    """The original's random draws: (scale_multiplier, degree, (offset_x, offset_y), flip)."""
    scale_multiplier = (config.max_scale - config.min_scale) * rng.random() + config.min_scale
    degree = (rng.random() - 0.5) * 2 * config.max_rotate_degree
    perturb = tuple(int((rng.random() - 0.5) * 2 * config.center_perturb_max) for _ in range(2))
    flip = bool(rng.random() <= config.flip_prob)
    return scale_multiplier, degree, perturb, flip


def compose_augmentation(label, scale_multiplier, degree, perturb, flip, config=AugmentConfig()):
    """The composed matrix for given draws (no randomness).

    label: needs 'img_width', 'img_height' (original image size), 'objpos' (main person's centre,
    original pixels) and 'scale_provided' (bbox height / 368).
    """
    scale = config.target_dist / label['scale_provided'] * scale_multiplier
    scaled_w, scaled_h = scaled_size(label['img_width'], label['img_height'], scale)
    # Homogeneous 3 x 3 matrices, applied right to left: scale, rotate, crop (translate), flip.
    before_crop = rotate_matrix(scaled_w, scaled_h, degree) @ scale_matrix(scale)
    objpos = apply_affine(before_crop, label['objpos'])
    offset = crop_offset(objpos, perturb, config.crop_size)
    matrix = flip_matrix(config.crop_size, flip) @ translate_matrix(offset) @ before_crop
    return AffineParams(scale=scale, degree=degree, crop_offset=offset, flip=flip, matrix=matrix[:2])


def sample_augmentation(label, rng, config=AugmentConfig()):
    """Draw one sample's augmentation as the original does and compose it: AffineParams."""
    return compose_augmentation(label, *draw_parameters(rng, config), config=config)


def centered_augmentation(label, config=AugmentConfig()):
    """The non-random version: scale to target_dist, no rotation, crop centred on objpos, no flip."""
    return compose_augmentation(label, 1.0, 0.0, (0, 0), False, config=config)


# --------------------------------------------------------------------------------------- warping
def transform_keypoints(keypoints, params, flip_permutation=FLIP_KEYPOINTS):
    """Move (P, K, 3) keypoints (the schema's order, original pixels) into the crop.

    Coordinates go through the matrix; on a flip left and right keypoints swap (flags travel with
    their points) as ``flip_permutation`` (the schema's; coco18's by default) says. Flags are otherwise
    unchanged, as in the original. Returns a new (P, K, 3).
    """
    keypoints = np.array(keypoints, dtype=np.float64)
    keypoints[..., :2] = apply_affine(params.matrix, keypoints[..., :2])
    if params.flip:
        keypoints = keypoints[..., list(flip_permutation), :]
    return keypoints


def decoded_pixel_matrix(reduction):
    """Decoded-at-1/r pixel q -> original pixel r q + (r - 1) / 2 (a DCT-scaled pixel is the mean
    of an r x r block). (3, 3); identity for r = 1."""
    shift = (reduction - 1) / 2
    return np.array([[reduction, 0.0, shift], [0.0, reduction, shift], [0.0, 0.0, 1.0]])


def warp_image(image, matrix, out_size, pad_value=128, reduction=1):
    """Warp an (h, w, 3) uint8 image with a (2, 3) matrix into (out_size, out_size, 3) uint8.

    reduction: the image was decoded at 1/reduction of the size the matrix expects
    (cv2.IMREAD_REDUCED_*); folded into the matrix.
    """
    matrix = np.asarray(matrix, dtype=np.float64)
    if reduction != 1:
        matrix = (np.vstack([matrix, [0.0, 0.0, 1.0]]) @ decoded_pixel_matrix(reduction))[:2]
    return cv2.warpAffine(
        image,
        matrix,
        (out_size, out_size),
        flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=(pad_value,) * 3,
    )


def warp_mask(mask, matrix, out_size, pad_value=1.0):
    """Warp an (H, W) float32 full-resolution mask into (out_size, out_size) uint8.

    Bilinear in float32 with border ``pad_value``, then truncated to uint8 as the original's CropPad
    stores it: any blend with a masked (0) pixel becomes 0. (Warping all-ones float32 gives exactly
    1.0 in OpenCV, so unmasked areas stay 1.)
    """
    warped = cv2.warpAffine(
        np.asarray(mask, dtype=np.float32),
        np.asarray(matrix, dtype=np.float64),
        (out_size, out_size),
        flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=float(pad_value),
    )
    return warped.astype(np.uint8)


def warp_sample(
    image, mask, keypoints, params, out_size, pad_value=128, mask_pad_value=1.0, reduction=1,
    flip_permutation=FLIP_KEYPOINTS,
):  # fmt: skip
    """Warp image, mask and keypoints of one sample with ``params`` (AffineParams).

    Args:
        image: (h, w, 3) uint8, decoded at 1/reduction of the original size.
        mask: (H, W) float32 full-resolution mask (1 = use), or None for "no crowd" (all ones).
        keypoints: (P, K, 3) the schema's order, original pixels.
        flip_permutation: the schema's left/right swap (:func:`transform_keypoints`).
    Returns:
        image (S, S, 3) uint8, mask (S, S) uint8 or None, keypoints (P, K, 3) float64.
    """
    warped_image = warp_image(image, params.matrix, out_size, pad_value, reduction)
    warped_mask = None if mask is None else warp_mask(mask, params.matrix, out_size, mask_pad_value)
    return warped_image, warped_mask, transform_keypoints(keypoints, params, flip_permutation)
