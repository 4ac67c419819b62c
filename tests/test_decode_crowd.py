"""The decoder in crowds: bit-identical to the straightforward loop port of the original
(benchmarks/bench_decode.py) on crowded maps built from the fixture (an oracle window tiled 2x2, plus
the fixture's noise recipe), on tiled noise-free maps (whose repeated limbs tie in score), and, for
the peaks, on small random heatmaps (borders, NaN, infinities). Tests that need ../shared skip without it."""

import importlib.util
import pathlib

import numpy as np
import pytest

from lwop_jax.inference import decode as decoder
from lwop_jax.inference.assembly import best_first, check_limb_order, limb_tables
from lwop_jax.inference.decode import extract_peaks, group_keypoints
from lwop_jax.skeleton import BODY_PARTS_KPT_IDS

BENCHMARK = pathlib.Path(__file__).resolve().parents[1] / 'benchmarks' / 'bench_decode.py'


def _load_bench():
    """The benchmark module, which holds the loop port and the crowd recipe (benchmarks/ is no package)."""
    spec = importlib.util.spec_from_file_location('bench_decode', BENCHMARK)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


bench = _load_bench()


@pytest.fixture(scope='module')
def fixture_maps(reference_dir):
    with np.load(reference_dir / 'decode_reference.npz') as data:
        return {key: data[key] for key in data.files if key.endswith(('_heatmaps', '_pafs'))}


@pytest.fixture(scope='module')
def crowd(fixture_maps):
    """A 100x100 window of image c003 (parts of two people) tiled 2x2, plus noise: about 1000 peaks
    and 66 poses on 200x200 maps. Returns (heatmaps, pafs, the loop port's output): the loop port
    takes a few seconds, so it runs once."""
    heatmaps, pafs = bench.crowd_maps(fixture_maps, 'c003', (100, 210, 100, 100), 2, 7)
    return heatmaps, pafs, bench.loop_decode(heatmaps, pafs)


def test_crowded_noisy_maps_match_the_loop_port(crowd):
    heatmaps, pafs, loop_output = crowd
    num_peaks, num_poses = bench.check_equal(loop_output, heatmaps, pafs)
    assert num_peaks > 900 and num_poses > 50  # crowded indeed (guards the test's premise)


@pytest.mark.parametrize(
    'knobs',
    [
        {'_FLAT_PAIRS': 1 << 30},  # every limb in the flat batch
        {'_FLAT_PAIRS': 0, '_CHUNK_PAIRS': 200, '_BATCH_PAIRS': 1},  # every limb as matrices, many small chunks
        {'_FLAT_PAIRS': 0, '_BATCH_PAIRS': 1 << 30},  # every chunk's survivors in one middle-sample batch
        {'_FEW_PAIRS': 0},  # every middle sample screened, down to the last pair
        {'_FEW_PAIRS': 1 << 30},  # no middle-sample screening: every survivor scored
    ],
)
def test_screening_paths_agree(crowd, monkeypatch, knobs):
    """The screen's batching and its stopping point change the work, never the result."""
    heatmaps, pafs, loop_output = crowd
    for name, value in knobs.items():
        monkeypatch.setattr(decoder, name, value)
    all_keypoints, counts = extract_peaks(heatmaps)
    pose_entries, _ = group_keypoints(all_keypoints, counts, pafs)
    np.testing.assert_array_equal(pose_entries, np.array(loop_output[1], np.float64).reshape(-1, 20))


def test_tiled_noise_free_maps_with_tied_limb_scores_match_the_loop_port(fixture_maps):
    """Tiles repeat limbs exactly, so limb scores tie within a limb, and the connection NMS must visit
    tied connections in the order of the original's np.argsort."""
    heatmaps = np.tile(fixture_maps['c002_heatmaps'], (2, 2, 1))
    pafs = np.tile(fixture_maps['c002_pafs'], (2, 2, 1))
    bench.check_equal(bench.loop_decode(heatmaps, pafs), heatmaps, pafs)
    all_keypoints, counts = extract_peaks(heatmaps)
    xy = all_keypoints[:, :2].astype(np.float32)
    rows = xy.astype(np.int64)
    offsets = np.concatenate([[0], np.cumsum(counts)])
    limb, _, _, scores = decoder._valid_limbs(pafs, offsets, xy, pafs[rows[:, 1], rows[:, 0]], 0.05, limb_tables())
    assert len(np.unique(np.stack([limb, scores]), axis=1)[0]) < len(scores)  # ties, as the premise says


def test_best_first_order_is_the_originals_argsort_order_with_ties():
    rng = np.random.default_rng(0)
    limb = np.sort(rng.integers(0, 19, 400))
    scores = rng.choice([0.25, 0.5, 0.75, 1.0], 400) + rng.choice([0.0, 1e-3], 400)  # many exact ties
    expected = np.concatenate(
        [np.flatnonzero(limb == part)[scores[limb == part].argsort()[::-1]] for part in np.unique(limb)]
    )
    np.testing.assert_array_equal(best_first(limb, scores), expected)


def test_limb_order_check():
    """The pose assembly's lookups are exact for the original's limb order; other orders are refused."""
    limbs = BODY_PARTS_KPT_IDS
    check_limb_order(limbs, decoder.EAR_LIMBS)
    with pytest.raises(ValueError, match='limb order'):  # 2 -> 3 before 1 -> 2: slot 2 used before it is filled
        check_limb_order((limbs[2], limbs[1], limbs[0]) + limbs[3:], decoder.EAR_LIMBS)
    with pytest.raises(ValueError, match='limb order'):  # an ear limb before an ordinary one
        check_limb_order(limbs, (16, 18))


@pytest.mark.parametrize('height, width', [(1, 1), (1, 9), (6, 1), (15, 13), (16, 16), (17, 40), (33, 21), (50, 37)])
def test_peaks_on_random_maps_match_the_loop_port(height, width):
    """Dense random maps (many peaks, plateaus, NMS chains), every border and band edge, NaN and
    infinities: the peaks equal the loop port's, channel by channel (the original's own rules)."""
    rng = np.random.default_rng(height * 100 + width)
    heatmaps = rng.choice(np.float32([0, 0.05, 0.1, 0.2, 0.3, 0.5]), (height, width, 19))
    heatmaps += rng.normal(0, 0.05, heatmaps.shape).astype(np.float32) * (rng.random(heatmaps.shape) < 0.5)
    specials = rng.random(heatmaps.shape)
    heatmaps[specials < 0.02] = np.nan
    heatmaps[(specials >= 0.02) & (specials < 0.03)] = np.inf
    heatmaps[(specials >= 0.03) & (specials < 0.04)] = -np.inf
    all_keypoints, counts = extract_peaks(heatmaps)
    expected = []
    for channel in range(18):
        expected.append(bench.loop_extract_keypoints(heatmaps[:, :, channel], sum(map(len, expected))))
    np.testing.assert_array_equal(counts, [len(peaks) for peaks in expected])
    np.testing.assert_array_equal(all_keypoints, np.array(sum(expected, []), np.float64).reshape(-1, 4))
