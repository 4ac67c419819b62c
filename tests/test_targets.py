"""Training targets (heatmaps, PAFs, stride-8 mask) against the original's reference targets."""

import importlib.util
import pathlib

import numpy as np
import pytest

from lwop_jax.data.targets import crop_mask_to_maps, downsample_mask, mask_size, render_targets
from lwop_jax.skeleton import PAF_LIMBS

NUM_SAMPLES = 20
STRIDE = 8


@pytest.fixture(scope='module')
def targets(reference_dir):
    return np.load(reference_dir / 'targets_reference.npz')


def sample_persons(targets, index):
    """(P, 18, 3) keypoints of sample `index` in render order (main, then others) and its (H, W)."""
    prefix = f's{index:03d}_'
    persons = np.concatenate([targets[prefix + 'main_keypoints'][None], targets[prefix + 'other_keypoints']])
    height, width = (int(v) for v in targets[prefix + 'image_hw'])
    return persons, height, width


def load_loop_port():
    """The benchmark's straightforward loop port of the original generators (an independent oracle)."""
    path = pathlib.Path(__file__).resolve().parents[1] / 'benchmarks' / 'bench_targets.py'
    spec = importlib.util.spec_from_file_location('bench_targets', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.loop_render_targets


# ------------------------------------------------------------------------ reference fixture
@pytest.mark.parametrize('index', range(NUM_SAMPLES))
def test_render_targets_matches_original(targets, index):
    persons, height, width = sample_persons(targets, index)
    heatmaps, pafs = render_targets(persons, height, width)
    expected_heatmaps = targets[f's{index:03d}_keypoint_maps'].transpose(1, 2, 0)
    expected_pafs = targets[f's{index:03d}_paf_maps'].transpose(1, 2, 0)
    assert heatmaps.dtype == pafs.dtype == np.float32
    assert heatmaps.shape == expected_heatmaps.shape == (height // STRIDE, width // STRIDE, 19)
    assert pafs.shape == expected_pafs.shape == (height // STRIDE, width // STRIDE, 38)
    assert np.abs(heatmaps - expected_heatmaps).max() <= 1e-5
    assert np.abs(pafs - expected_pafs).max() <= 1e-5


def test_render_targets_bit_identical_on_all_samples(targets):
    """Stronger than the tolerance test: every value of all 20 samples is bit-equal (T2 order)."""
    differing = {}
    for index in range(NUM_SAMPLES):
        persons, height, width = sample_persons(targets, index)
        heatmaps, pafs = render_targets(persons, height, width)
        count = np.count_nonzero(
            heatmaps != targets[f's{index:03d}_keypoint_maps'].transpose(1, 2, 0)
        ) + np.count_nonzero(pafs != targets[f's{index:03d}_paf_maps'].transpose(1, 2, 0))
        if count:
            differing[index] = count
    assert not differing, f'values differing per sample: {differing}'


@pytest.mark.parametrize('index', range(NUM_SAMPLES))
def test_downsample_mask_matches_original(targets, index):
    prefix = f's{index:03d}_'
    mask = downsample_mask(targets[prefix + 'mask_full'])
    expected = targets[prefix + 'mask']
    assert mask.dtype == np.float32 and mask.shape == expected.shape
    assert np.array_equal(mask, expected)


@pytest.mark.parametrize('index', [1, 3, 19, 0])
def test_crop_mask_to_maps_makes_shapes_agree(targets, index):
    """T1: mask can be one row taller than the maps (s001, s003, s019); cropping drops it."""
    prefix = f's{index:03d}_'
    mask = downsample_mask(targets[prefix + 'mask_full'])
    maps = targets[prefix + 'keypoint_maps']
    cropped = crop_mask_to_maps(mask, maps.shape[1:])
    assert cropped.shape == maps.shape[1:]
    assert np.array_equal(cropped, mask[: maps.shape[1], : maps.shape[2]])


# ----------------------------------------------------------------------- behaviour and edges
def test_no_persons_gives_empty_maps_and_full_background():
    for empty in ([], np.zeros((0, 18, 3))):
        heatmaps, pafs = render_targets(empty, 368, 368)
        assert heatmaps.shape == (46, 46, 19) and pafs.shape == (46, 46, 38)
        assert not heatmaps[..., :18].any() and np.all(heatmaps[..., 18] == 1) and not pafs.any()


def test_single_person_array_is_accepted():
    person = np.zeros((18, 3))
    person[:, 0], person[:, 1], person[:, 2] = 100, 120, 1
    single = render_targets(person, 200, 240)
    batched = render_targets(person[None], 200, 240)
    assert all(np.array_equal(a, b) for a, b in zip(single, batched))


def test_only_flags_up_to_one_render():
    person = np.zeros((18, 3))
    person[:, 0], person[:, 1] = 100.0, 80.0
    person[:, 2] = 2
    heatmaps, pafs = render_targets([person], 160, 200)
    assert not heatmaps[..., :18].any() and not pafs.any()
    person[0, 2] = 0  # occluded nose: rendered
    heatmaps, _ = render_targets([person], 160, 200)
    assert heatmaps[..., 0].max() == np.float32(np.exp(-(0.5**2 + 3.5**2) / 2 / 49))
    assert not heatmaps[..., 1:18].any()


def test_gaussian_clamps_at_one_where_persons_overlap():
    person = np.zeros((18, 3))
    person[:, 2] = 2
    person[0] = (83.5, 83.5, 1)  # exactly on cell (10, 10): exp(0) = 1
    one, _ = render_targets([person], 160, 160)
    two, _ = render_targets([person, person], 160, 160)
    assert one[10, 10, 0] == 1 and two[10, 10, 0] == 1
    neighbour = one[10, 11, 0]
    assert two[10, 11, 0] == min(np.float32(neighbour) + np.float32(neighbour), 1)
    assert two[..., 18].min() == 0


def _vertical_limb_person(x_pixels):
    """Neck -> right hip (training limb 0) from (x, 16) to (x, 120) in pixels."""
    person = np.zeros((18, 3))
    person[:, 2] = 2
    person[1] = (x_pixels, 16.0, 1)
    person[8] = (x_pixels, 120.0, 1)
    return person


def test_paf_band_is_asymmetric_t3():
    _, pafs = render_targets([_vertical_limb_person(80.0)], 160, 160)  # x = 10.0 map units
    columns = np.nonzero(pafs[5, :, 1])[0]
    assert list(columns) == [9, 10]  # column 11 is at distance 1 but outside the window
    _, pafs = render_targets([_vertical_limb_person(83.2)], 160, 160)  # x = 10.4
    assert list(np.nonzero(pafs[5, :, 1])[0]) == [10]
    assert pafs[5, 10, 0] == 0 and pafs[5, 10, 1] == 1  # unit vector (0, 1)


def test_later_persons_overwrite_paf():
    down = _vertical_limb_person(80.0)
    up = down.copy()
    up[[1, 8]] = up[[8, 1]]  # same limb, opposite direction
    _, pafs = render_targets([down, up], 160, 160)
    assert pafs[5, 10, 1] == -1
    _, pafs = render_targets([up, down], 160, 160)
    assert pafs[5, 10, 1] == 1


def test_zero_length_limb_draws_nothing():
    person = _vertical_limb_person(80.0)
    person[8, :2] = person[1, :2] + (1e-9, 0)  # < 1e-7 map units
    _, pafs = render_targets([person], 160, 160)
    assert not pafs[..., 0:2].any()


@pytest.mark.parametrize('seed', range(6))
def test_matches_loop_port_on_random_crowds(seed):
    """Random persons, partly outside the image, random flags, duplicates: bit-equal to the loop port."""
    loop_render_targets = load_loop_port()
    rng = np.random.default_rng(seed)
    height, width = [(368, 368), (333, 500), (165, 203)][seed % 3]
    num_persons = rng.integers(1, 9)
    persons = np.empty((num_persons, 18, 3))
    persons[..., 0] = rng.uniform(-60, width + 60, (num_persons, 18))
    persons[..., 1] = rng.uniform(-60, height + 60, (num_persons, 18))
    persons[..., 2] = rng.choice([0, 1, 1, 2], (num_persons, 18))
    persons[-1] = persons[0]  # an exact duplicate: overlapping Gaussians and PAFs
    ours = render_targets(persons, height, width)
    theirs = loop_render_targets(persons.tolist(), height, width)
    for a, b in zip(ours, theirs):
        assert a.shape == b.shape and np.array_equal(a, b)


def test_paf_channels_follow_skeleton_table():
    person = np.zeros((18, 3))
    person[:, 2] = 2
    a, b = PAF_LIMBS[7]  # r_shoulder -> r_elbow
    person[a] = (40.0, 40.0, 1)
    person[b] = (120.0, 40.0, 1)
    _, pafs = render_targets([person], 160, 160)
    assert np.nonzero(pafs.any(axis=(0, 1)))[0].tolist() == [14]  # x channel only: y component is 0
    assert pafs[5, 8, 14] == 1


# --------------------------------------------------------------------------------------- mask
def test_mask_size_rounds_half_to_even():
    assert mask_size(333, 500) == (42, 62)  # 41.625 -> 42
    assert mask_size(324, 332) == (40, 42)  # 40.5 -> 40, 41.5 -> 42
    assert mask_size(368, 368) == (46, 46)


def test_crop_mask_to_maps_rejects_smaller_mask():
    with pytest.raises(ValueError):
        crop_mask_to_maps(np.ones((4, 4), np.float32), (5, 4))


@pytest.mark.parametrize('dtype', [np.float32, np.uint8])
def test_downsample_mask_matches_opencv_inter_area(dtype):
    cv2 = pytest.importorskip('cv2')
    rng = np.random.default_rng(0)
    for height, width in [(368, 368), (333, 500), (165, 203), (12, 9), (8, 8), (429, 640)]:
        if dtype == np.uint8:
            mask = rng.integers(0, 256, (height, width)).astype(np.uint8)
        else:  # interpolated, non-binary masks as after Scale/Rotate
            mask = rng.random((height, width), dtype=np.float32)
        expected = cv2.resize(mask, None, fx=1 / STRIDE, fy=1 / STRIDE, interpolation=cv2.INTER_AREA)
        ours = downsample_mask(mask)
        assert ours.dtype == expected.dtype and ours.shape == expected.shape
        assert np.array_equal(ours, expected)


def test_far_away_and_non_finite_keypoints():
    person = np.zeros((18, 3))
    person[:, 2] = 1
    person[:, 0], person[:, 1] = 1e30, -1e30  # far outside: nothing drawn, no int overflow
    heatmaps, pafs = render_targets([person], 64, 64)
    assert not heatmaps[..., :18].any() and not pafs.any()
    person[3, 0] = np.nan
    with pytest.raises(ValueError, match='finite'):
        render_targets([person], 64, 64)
    person[3, 2] = 2  # absent points may hold anything
    render_targets([person], 64, 64)
