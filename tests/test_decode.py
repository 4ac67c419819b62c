"""Decoder parity with the original (decode_reference.npz, README section 6) and its contract."""

import json

import numpy as np
import pytest

from lwop_jax.inference.decode import Poses, decode, extract_peaks, group_keypoints, to_coco_keypoints

CASES = ('c000', 'c001', 'c002', 'c003')
NOISE_STD = 0.03


@pytest.fixture(scope='module')
def reference(reference_dir):
    with np.load(reference_dir / 'decode_reference.npz') as data:
        return {key: data[key] for key in data.files}


def _meta(reference, case):
    return json.loads(str(reference[f'{case}_meta']))


def _rebuild_noisy_maps(reference, case):
    """README section 6, step 5: RandomState(seed).normal(0, 0.03) float32, heatmaps then PAFs
    from the same stream, added in float32; checked against the stored checksums."""
    meta = _meta(reference, case)
    heatmaps, pafs = reference[f'{case}_heatmaps'], reference[f'{case}_pafs']
    rs = np.random.RandomState(meta['noise_seed'])
    noise_h = rs.normal(0.0, NOISE_STD, size=heatmaps.shape).astype(np.float32)
    noise_p = rs.normal(0.0, NOISE_STD, size=pafs.shape).astype(np.float32)
    assert noise_h.reshape(-1)[:5].tolist() == meta['noise_heatmaps_first5']
    assert noise_p.reshape(-1)[:5].tolist() == meta['noise_pafs_first5']
    noisy_h, noisy_p = heatmaps + noise_h, pafs + noise_p
    for array, key in (
        (noise_h, 'noise_heatmaps_sum_f64'),
        (noise_p, 'noise_pafs_sum_f64'),
        (noisy_h, 'noisy_heatmaps_sum_f64'),
        (noisy_p, 'noisy_pafs_sum_f64'),
    ):
        assert array.sum(dtype=np.float64) == pytest.approx(meta[key], rel=1e-12, abs=1e-9), key
    return noisy_h, noisy_p


@pytest.fixture(scope='module')
def maps(reference):
    """(case, variant) -> (heatmaps (H, W, 19), pafs (H, W, 38)), variants oracle and noisy."""
    out = {}
    for case in CASES:
        out[case, 'oracle'] = reference[f'{case}_heatmaps'], reference[f'{case}_pafs']
        out[case, 'noisy'] = _rebuild_noisy_maps(reference, case)
    return out


@pytest.mark.parametrize('variant', ['oracle', 'noisy'])
@pytest.mark.parametrize('case', CASES)
def test_matches_original_exactly(reference, maps, case, variant):
    heatmaps, pafs = maps[case, variant]
    expected = {
        key: reference[f'{case}_{variant}_{key}']
        for key in ('all_keypoints', 'kpt_counts', 'pose_entries', 'coco_keypoints', 'scores')
    }

    all_keypoints, counts = extract_peaks(heatmaps)
    np.testing.assert_array_equal(counts, expected['kpt_counts'])
    np.testing.assert_array_equal(all_keypoints, expected['all_keypoints'])

    pose_entries, _ = group_keypoints(all_keypoints, counts, pafs)
    assert pose_entries.shape == expected['pose_entries'].shape
    np.testing.assert_array_equal(pose_entries, expected['pose_entries'])

    poses = decode(heatmaps, pafs)
    coco_keypoints, scores = to_coco_keypoints(poses)
    assert coco_keypoints.shape == expected['coco_keypoints'].shape
    np.testing.assert_array_equal(coco_keypoints, expected['coco_keypoints'])
    np.testing.assert_array_equal(scores, expected['scores'])

    # decode() packs the same result: scores, counts and per-slot keypoints.
    np.testing.assert_array_equal(poses.scores, expected['pose_entries'][:, 18])
    np.testing.assert_array_equal(poses.num_keypoints, expected['pose_entries'][:, 19])
    ids = expected['pose_entries'][:, :18].astype(int)
    found = ids >= 0
    np.testing.assert_array_equal(poses.keypoints[found], expected['all_keypoints'][ids[found], :3])
    np.testing.assert_array_equal(poses.keypoints[~found], np.tile([-1, -1, 0], ((~found).sum(), 1)))


def test_reference_counts_match_readme(reference, maps):
    """Guards the fixture itself: the numbers of README section 6."""
    for case in CASES:
        meta = _meta(reference, case)
        for variant in ('oracle', 'noisy'):
            assert len(reference[f'{case}_{variant}_all_keypoints']) == meta[f'n_keypoints_{variant}']
            assert len(reference[f'{case}_{variant}_pose_entries']) == meta[f'n_poses_{variant}']


def test_decode_does_not_modify_inputs(maps):
    heatmaps, pafs = maps['c000', 'noisy']
    heatmaps_before, pafs_before = heatmaps.copy(), pafs.copy()
    decode(heatmaps, pafs)
    np.testing.assert_array_equal(heatmaps, heatmaps_before)  # the original zeroes < 0.1 here
    np.testing.assert_array_equal(pafs, pafs_before)


def test_empty_maps_give_no_people():
    poses = decode(np.zeros((40, 60, 19), np.float32), np.zeros((40, 60, 38), np.float32))
    assert isinstance(poses, Poses) and len(poses) == 0
    assert poses.keypoints.shape == (0, 18, 3) and poses.keypoints.dtype == np.float32
    assert poses.scores.shape == (0,) and poses.num_keypoints.shape == (0,)
    coco_keypoints, scores = to_coco_keypoints(poses)
    assert coco_keypoints.shape == (0, 51) and scores.shape == (0,)
    all_keypoints, counts = extract_peaks(np.zeros((40, 60, 19), np.float32))
    assert all_keypoints.shape == (0, 4) and counts.tolist() == [0] * 18


@pytest.mark.parametrize(
    'heatmap_shape, paf_shape, message',
    [
        ((40, 60), (40, 60, 38), 'heatmaps must have shape'),
        ((40, 60, 10), (40, 60, 38), 'heatmaps must have shape'),
        ((1, 40, 60, 19), (40, 60, 38), 'heatmaps must have shape'),
        ((40, 60, 19), (40, 60, 19), 'pafs must have shape'),
        ((40, 60, 19), (38, 40, 60), 'pafs must have shape'),
        ((40, 60, 19), (20, 30, 38), 'share one grid'),
    ],
)
def test_shape_validation(heatmap_shape, paf_shape, message):
    with pytest.raises(ValueError, match=message):
        decode(np.zeros(heatmap_shape, np.float32), np.zeros(paf_shape, np.float32))


# --- Small synthetic checks of the original's peak rules (README D1-D3) ------------------------


def _one_channel(values, channel=0, shape=(12, 20)):
    heatmaps = np.zeros(shape + (19,), np.float32)
    for (y, x), v in values.items():
        heatmaps[y, x, channel] = v
    return heatmaps


def test_peak_rules_threshold_plateau_and_border():
    heatmaps = _one_channel(
        {
            (0, 0): 0.5,  # border pixel: outside counts as 0
            (5, 3): 0.09,  # below the 0.1 threshold
            (5, 10): 0.4,
            (5, 11): 0.4,  # plateau: not strictly greater
            (9, 16): 0.1,
        }
    )  # exactly the threshold: kept
    all_keypoints, counts = extract_peaks(heatmaps)
    assert counts[0] == 2
    np.testing.assert_array_equal(all_keypoints[:, :2], [[0, 0], [16, 9]])
    np.testing.assert_array_equal(all_keypoints[:, 2], np.float32([0.5, 0.1]))


def test_peak_nms_is_greedy_in_x_order_not_score_order():
    # Sorted by x: A(x=2) suppresses B(x=6, dist 4); B, although stronger, suppresses nothing,
    # so C(x=10, dist 4 from B, 8 from A) survives. Ids run across channels.
    heatmaps = _one_channel({(5, 2): 0.2, (5, 6): 0.9, (5, 10): 0.3})
    heatmaps[3, 3, 4] = 0.7
    all_keypoints, counts = extract_peaks(heatmaps)
    assert counts[0] == 2 and counts[4] == 1
    np.testing.assert_array_equal(
        all_keypoints, [[2, 5, np.float32(0.2), 0], [10, 5, np.float32(0.3), 1], [3, 3, np.float32(0.7), 2]]
    )


def test_peak_order_is_x_then_y():
    heatmaps = _one_channel({(9, 4): 0.5, (1, 12): 0.5, (1, 4): 0.5})
    all_keypoints, _ = extract_peaks(heatmaps)
    np.testing.assert_array_equal(all_keypoints[:, :2], [[4, 1], [4, 9], [12, 1]])


def test_small_synthetic_person():
    """neck -> r_sho and neck -> r_hip along unit PAFs make one 3-keypoint person; a lone nose
    (a 1-keypoint fragment) is dropped by the final count filter."""
    heatmaps = np.zeros((30, 40, 19), np.float32)
    pafs = np.zeros((30, 40, 38), np.float32)
    heatmaps[10, 20, 1] = heatmaps[10, 30, 2] = 0.5  # neck, r_sho
    heatmaps[20, 20, 8] = 0.6  # r_hip
    heatmaps[2, 2, 0] = 0.9  # nose, far away, no PAF
    pafs[10, 20:31, 12] = 1.0  # limb 1->2 (channels 12, 13): +x
    pafs[10:21, 20, 1] = 1.0  # limb 1->8 (channels 0, 1): +y
    poses = decode(heatmaps, pafs)
    assert len(poses) == 1 and poses.num_keypoints.tolist() == [3]
    np.testing.assert_array_equal(
        poses.keypoints[0, [1, 2, 8]], [[20, 10, 0.5], [30, 10, 0.5], [20, 20, np.float32(0.6)]]
    )
    assert (poses.keypoints[0, [0, 3, 4, 5]] == [-1, -1, 0]).all()
    # Score: keypoints 0.5 + 0.5 + 0.6 plus two limb scores of 1 / (1 + 1e-7) each.
    expected = (0.5 + 0.5 + 1 / (10 + 1e-6) * 10) + (float(np.float32(0.6)) + 1 / (10 + 1e-6) * 10)
    assert poses.scores[0] == pytest.approx(expected, abs=1e-6)
    coco_keypoints, scores = to_coco_keypoints(poses)
    # r_sho is COCO 6, r_hip COCO 12; pixel indices get +0.5.
    np.testing.assert_array_equal(coco_keypoints[0, 18:21], [30.5, 10.5, 1])
    np.testing.assert_array_equal(coco_keypoints[0, 36:39], [20.5, 20.5, 1])
    assert scores[0] == poses.scores[0] * 2
