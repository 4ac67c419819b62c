"""Single-warp augmentation vs the original's Scale -> Rotate -> CropPad -> Flip chain."""

import math

import cv2
import numpy as np
import pytest

from lwop_jax.data import augment
from lwop_jax.skeleton import FLIP_KEYPOINTS, FLIP_PAIRS

CONFIG = augment.AugmentConfig()
CROP = CONFIG.crop_size


def random_label(rng, width=640, height=480):
    bbox_height = rng.uniform(80, 400)
    return {
        'img_width': width,
        'img_height': height,
        'objpos': [rng.uniform(0, width), rng.uniform(0, height)],
        'scale_provided': bbox_height / 368,
    }


# --------------------------------------------------------------- the original, transcribed on points
def original_chain(label, points, draws):
    """The original's transforms applied to (N, 2) points, with its own formulas and cv2 sizes.

    draws: the five U(0, 1) numbers in draw order (scale, rotate, crop x, crop y, flip).
    Returns (points (N, 2), objpos (2,), flipped).
    """
    u_scale, u_rotate, u_crop_x, u_crop_y, u_flip = draws
    points = np.array(points, dtype=np.float64)
    objpos = np.array(label['objpos'], dtype=np.float64)
    # Scale (prob 1): multiplier from the second random() in the original.
    scale = CONFIG.target_dist / label['scale_provided'] * ((1.1 - 0.5) * u_scale + 0.5)
    scaled = cv2.resize(np.zeros((label['img_height'], label['img_width']), np.uint8), dsize=(0, 0), fx=scale, fy=scale)
    points, objpos = points * scale, objpos * scale
    # Rotate
    h, w = scaled.shape
    degree = (u_rotate - 0.5) * 2 * 40
    rotation = cv2.getRotationMatrix2D((w / 2, h / 2), degree, 1)
    abs_cos, abs_sin = abs(rotation[0, 0]), abs(rotation[0, 1])
    bound_w, bound_h = int(h * abs_sin + w * abs_cos), int(h * abs_cos + w * abs_sin)
    rotation[0, 2] += bound_w / 2 - w / 2
    rotation[1, 2] += bound_h / 2 - h / 2
    points = points @ rotation[:, :2].T + rotation[:, 2]
    objpos = rotation[:, :2] @ objpos + rotation[:, 2]
    # CropPad
    offset_x, offset_y = int((u_crop_x - 0.5) * 2 * 40), int((u_crop_y - 0.5) * 2 * 40)
    offset_left = -int(objpos[0] + offset_x - CROP / 2)
    offset_up = -int(objpos[1] + offset_y - CROP / 2)
    points = points + [offset_left, offset_up]
    objpos = objpos + [offset_left, offset_up]
    # Flip
    flipped = u_flip <= 0.5
    if flipped:
        points[:, 0] = CROP - 1 - points[:, 0]
        objpos[0] = CROP - 1 - objpos[0]
    return points, objpos, flipped


@pytest.mark.parametrize('seed', range(40))
def test_composed_matrix_equals_the_original_chain(seed):
    label = random_label(np.random.default_rng(1000 + seed))
    params = augment.sample_augmentation(label, np.random.default_rng(seed))
    draws = np.random.default_rng(seed).random(5)
    points = np.random.default_rng(seed).uniform(-100, 700, (20, 2))

    expected_points, expected_objpos, expected_flip = original_chain(label, points, draws)

    assert params.flip == expected_flip
    np.testing.assert_allclose(augment.apply_affine(params.matrix, points), expected_points, atol=1e-9)
    np.testing.assert_allclose(augment.apply_affine(params.matrix, label['objpos']), expected_objpos, atol=1e-9)


def test_rotation_matrix_matches_cv2():
    for degree in (-40, -13.7, 0, 22.5, 40):
        expected = cv2.getRotationMatrix2D((321.5, 200), degree, 1)
        got = augment.rotate_matrix(643, 400, degree)
        bound_w, bound_h = (
            int(400 * abs(expected[0, 1]) + 643 * abs(expected[0, 0])),
            int(400 * abs(expected[0, 0]) + 643 * abs(expected[0, 1])),
        )
        expected[:, 2] += [bound_w / 2 - 321.5, bound_h / 2 - 200]
        np.testing.assert_allclose(got[:2], expected, atol=1e-12)


def test_scaled_size_matches_cv2_resize():
    rng = np.random.default_rng(0)
    for _ in range(200):
        width, height, scale = int(rng.integers(50, 700)), int(rng.integers(50, 700)), rng.uniform(0.2, 3)
        resized = cv2.resize(np.zeros((height, width), np.uint8), dsize=(0, 0), fx=scale, fy=scale)
        assert augment.scaled_size(width, height, scale) == (resized.shape[1], resized.shape[0])


def test_draws_follow_the_original_distributions():
    rng = np.random.default_rng(7)
    draws = [augment.draw_parameters(rng) for _ in range(2000)]
    multipliers = np.array([d[0] for d in draws])
    degrees = np.array([d[1] for d in draws])
    offsets = np.array([d[2] for d in draws])
    flips = np.array([d[3] for d in draws])
    assert multipliers.min() >= 0.5 and multipliers.max() < 1.1
    assert -40 <= degrees.min() < -38 and 38 < degrees.max() < 40
    assert offsets.dtype.kind == 'i' and -40 < offsets.min() <= -38 and 38 <= offsets.max() < 40
    assert 0.45 < flips.mean() < 0.55


# ------------------------------------------------------------------------------- image alignment
def dot_image(points, height, width, sigma):
    """(H, W, C) float32: one Gaussian dot per channel, centred at points[c] (pixel-centre coords)."""
    ys, xs = np.mgrid[0:height, 0:width]
    dots = [np.exp(-((xs - x) ** 2 + (ys - y) ** 2) / (2 * sigma**2)) for x, y in points]
    return np.stack(dots, axis=-1).astype(np.float32)


def centroids(image):
    """(C, 2) intensity-weighted centroid (x, y) of each channel."""
    ys, xs = np.mgrid[0 : image.shape[0], 0 : image.shape[1]]
    weights = image.reshape(-1, image.shape[2]).astype(np.float64)
    total = np.maximum(weights.sum(axis=0), 1e-12)  # a dot that left the crop: ignored by callers
    return np.stack([xs.reshape(-1) @ weights / total, ys.reshape(-1) @ weights / total], axis=-1)


@pytest.mark.parametrize('seed', range(12))
def test_dots_land_on_their_transformed_keypoints(seed):
    rng = np.random.default_rng(seed)
    width, height, sigma = 320, 240, 4.0
    label = random_label(rng, width, height)
    label['scale_provided'] = rng.uniform(0.4, 1.0)  # overall scales ~0.3..1.6 on this small image
    # Three keypoints of one person, inside the image away from its border; the others absent.
    keypoints = np.zeros((1, 18, 3))
    keypoints[..., 2] = 2
    indices = [2, 5, 0]  # r_sho, l_sho, nose: a flip swaps the first two
    keypoints[0, indices, :2] = rng.uniform([20, 20], [width - 20, height - 20], (3, 2))
    keypoints[0, indices, 2] = 1
    label['objpos'] = keypoints[0, indices[2], :2]  # keep the dots near the crop centre

    checked = 0
    for draw in range(4):
        params = augment.sample_augmentation(label, np.random.default_rng([seed, draw]))
        image = dot_image(keypoints[0, indices, :2], height, width, sigma)
        warped = augment.warp_image(image, params.matrix, CROP, pad_value=0)
        moved = augment.transform_keypoints(keypoints, params)[0]
        destination = [FLIP_KEYPOINTS[k] if params.flip else k for k in indices]
        expected = moved[destination, :2]
        inside = np.all(
            (expected > 5 * sigma * params.scale + 2) & (expected < CROP - 5 * sigma * params.scale - 2), axis=-1
        )
        assert np.all(moved[destination, 2] == 1)
        np.testing.assert_allclose(centroids(warped)[inside], expected[inside], atol=0.3)
        checked += inside.sum()
    assert checked >= 4  # most dots stay in the crop: the test is not vacuous


@pytest.mark.parametrize('reduction', [2, 4])
def test_reduced_decode_is_folded_into_the_matrix(reduction):
    rng = np.random.default_rng(reduction)
    width, height = 640, 480
    points = rng.uniform(100, [width - 100, height - 100], (3, 2))
    image = dot_image(points, height, width, sigma=12.0)
    # A DCT-scaled decode averages r x r blocks, like INTER_AREA by an integer factor.
    reduced = cv2.resize(image, (width // reduction, height // reduction), interpolation=cv2.INTER_AREA)
    label = {'img_width': width, 'img_height': height, 'objpos': points[0], 'scale_provided': 1.0}
    params = augment.compose_augmentation(label, 0.5, 17.0, (3, -5), True)  # scale 0.3
    full = centroids(augment.warp_image(image, params.matrix, CROP, pad_value=0))
    folded = centroids(augment.warp_image(reduced, params.matrix, CROP, pad_value=0, reduction=reduction))
    np.testing.assert_allclose(folded, full, atol=0.1)
    np.testing.assert_allclose(full, augment.apply_affine(params.matrix, points), atol=0.3)


def test_mask_blends_truncate_to_zero_and_border_is_one():
    mask = np.ones((240, 320), np.float32)
    mask[100:140, 150:200] = 0
    label = {'img_width': 320, 'img_height': 240, 'objpos': [175, 120], 'scale_provided': 0.6}
    params = augment.compose_augmentation(label, 0.8, 11.0, (0, 0), False)  # scale 0.8, rotated
    warped = augment.warp_mask(mask, params.matrix, CROP)
    as_float = cv2.warpAffine(
        mask, params.matrix, (CROP, CROP), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=1.0
    )
    assert warped.dtype == np.uint8
    assert set(np.unique(warped)) == {0, 1}
    np.testing.assert_array_equal(warped, (as_float >= 1).astype(np.uint8))  # blends -> 0
    assert ((as_float > 0) & (as_float < 1)).any()  # there were blends to truncate
    assert warped[0, 0] == 1 and warped[-1, -1] == 1  # outside the image: padding 1


# ------------------------------------------------------------------------------- determinism, flip
def test_same_seed_same_params_different_seed_different():
    label = random_label(np.random.default_rng(0))
    first = augment.sample_augmentation(label, np.random.default_rng(123))
    again = augment.sample_augmentation(label, np.random.default_rng(123))
    other = augment.sample_augmentation(label, np.random.default_rng(124))
    np.testing.assert_array_equal(first.matrix, again.matrix)
    assert (first.flip, first.crop_offset, first.degree) == (again.flip, again.crop_offset, again.degree)
    assert not np.array_equal(first.matrix, other.matrix)


def test_flip_swaps_left_right_and_mirrors_x():
    rng = np.random.default_rng(3)
    label = random_label(rng)
    keypoints = np.concatenate([rng.uniform(0, 400, (2, 18, 2)), rng.integers(0, 3, (2, 18, 1))], axis=-1)
    plain = augment.compose_augmentation(label, 0.9, 12.0, (5, -7), False)
    flipped = augment.compose_augmentation(label, 0.9, 12.0, (5, -7), True)
    before = augment.transform_keypoints(keypoints, plain)
    after = augment.transform_keypoints(keypoints, flipped)
    for right, left in FLIP_PAIRS:  # internal indices: the right point becomes the left one
        np.testing.assert_allclose(after[:, left, 0], CROP - 1 - before[:, right, 0], atol=1e-9)
        np.testing.assert_allclose(after[:, left, 1:], before[:, right, 1:], atol=1e-9)
        np.testing.assert_allclose(after[:, right, 0], CROP - 1 - before[:, left, 0], atol=1e-9)
    for centre in (0, 1):  # nose and neck stay
        np.testing.assert_allclose(after[:, centre, 0], CROP - 1 - before[:, centre, 0], atol=1e-9)
        np.testing.assert_array_equal(after[:, centre, 2], keypoints[:, centre, 2])
    # objpos too
    objpos_plain = augment.apply_affine(plain.matrix, label['objpos'])
    objpos_flip = augment.apply_affine(flipped.matrix, label['objpos'])
    assert math.isclose(objpos_flip[0], CROP - 1 - objpos_plain[0]) and math.isclose(objpos_flip[1], objpos_plain[1])


def test_centered_augmentation_puts_objpos_at_the_crop_centre():
    label = random_label(np.random.default_rng(5))
    params = augment.centered_augmentation(label)
    assert not params.flip and params.degree == 0
    np.testing.assert_allclose(augment.apply_affine(params.matrix, label['objpos']), CROP / 2, atol=1.0)
    assert math.isclose(params.scale, CONFIG.target_dist / label['scale_provided'])


def test_flags_are_kept_for_points_leaving_the_crop():
    """The original's Rotate/CropPad/Flip never change flags; far points keep theirs."""
    label = {'img_width': 640, 'img_height': 480, 'objpos': [50, 50], 'scale_provided': 0.5}
    keypoints = np.array([[[600.0, 450.0, 1.0]] * 18])
    moved = augment.transform_keypoints(keypoints, augment.centered_augmentation(label))
    assert np.all(moved[..., 0] > CROP) and np.all(moved[..., 2] == 1)
