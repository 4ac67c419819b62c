"""Pose decoder: heatmap peaks + greedy PAF grouping, bit-identical to the original, vectorised.

Reproduces `modules/keypoints.py` of the original (`extract_keypoints` over the 18 keypoint channels,
in :mod:`lwop_jax.inference.peaks`, then `group_keypoints`) and `val.py` `convert_to_coco_format`.

Cost. Every pair of keypoints of a limb's two types is a candidate limb, valid only when >= 9 of its
10 PAF samples pass, and no sample's outcome is known without reading it: some work per pair is
inherent. It is kept to a few float32 operations on cache-sized matrices: the two end samples sit on
the keypoints (their PAF values are per keypoint), pairs of two keypoints whose PAF is too short to
pass are never formed, and a pair is dropped once 2 samples fail (a few middle samples are read one
at a time, one memory access each). Only the survivors are scored, exactly as the original scores
them; the connection NMS is one pass and the pose assembly looks poses up by keypoint, so the rest
grows linearly with keypoints, connections and people.

Exactness notes (why the code looks the way it does):
* Every float operation that feeds a comparison or an output is the same NumPy operation on the
  same dtypes as in the original (float32 limb sampling, `np.round` half-to-even, float32
  `sum(1)` over a C-contiguous (N, 10) block, float64 division by `valid_num + 1e-6`, float64
  pose scores, added in the original's order), so results are bit-identical, not merely close.
* Connection NMS visits connections in the order of the original's `np.argsort` (default kind).
* The decoder never writes into the caller's maps (the original zeroes heatmap values < 0.1 in
  place; here the threshold is folded into the peak test instead).

This module is part of the CPU inference path: NumPy and the standard library only.
"""

import functools
import itertools
from dataclasses import dataclass

import numpy as np

from lwop_jax.inference.assembly import assemble, connection_nms, limb_tables
from lwop_jax.inference.peaks import check_heatmaps, extract_peaks
from lwop_jax.schema import load_schema
from lwop_jax.skeleton import COCO_KEYPOINT_NAMES

POINTS_PER_LIMB = 10  # PAF samples along each candidate limb
POSE_ENTRY_SIZE = 20  # coco18: 18 keypoint ids, total score, keypoint count (K + 2 for K keypoints)
EAR_LIMBS = (17, 18)  # coco18's completing limbs (shoulder -> ear): only fill empty slots


@dataclass(frozen=True)
class Poses:
    """Decoded people, in the original's order.

    keypoints:     (N, K, 3) float32, the schema's keypoint order (coco18: K = 18); (x, y, peak score)
                   on the map grid; missing keypoints are (-1, -1, 0).
    scores:        (N,) float64, the original `pose_entries[:, 18]` (sum of keypoint and limb
                   scores).
    num_keypoints: (N,) int64, the original `pose_entries[:, 19]` (keypoints added by completing
                   limbs, coco18's shoulder-ear ones, are not counted, as in the original).
    """

    keypoints: np.ndarray
    scores: np.ndarray
    num_keypoints: np.ndarray

    def __len__(self):
        return len(self.scores)


# ----------------------------------------------------------------------------------------------
# Input validation
# ----------------------------------------------------------------------------------------------


def _check_pafs(pafs, grid_hw, num_pafs):
    pafs = np.asarray(pafs)
    if pafs.ndim != 3 or pafs.shape[2] != num_pafs:
        raise ValueError(f'pafs must have shape (H, W, {num_pafs}), got {pafs.shape}')
    if grid_hw is not None and pafs.shape[:2] != tuple(grid_hw):
        raise ValueError(
            f'heatmaps and pafs must share one grid: heatmaps are {tuple(grid_hw)} (H, W), pafs are {pafs.shape[:2]}'
        )
    return np.asarray(pafs, dtype=np.float32)


# ----------------------------------------------------------------------------------------------
# Limb candidates (original group_keypoints, scoring part)
# ----------------------------------------------------------------------------------------------

# Limbs with fewer candidate pairs are screened together as one flat batch (few NumPy calls in all);
# larger ones one at a time as (b, a) matrices, whose intermediate arrays then stay in the CPU caches.
_FLAT_PAIRS = 1 << 12
# Middle samples first: far from both keypoints, they reject wrong pairs soonest.
_SCREEN_SAMPLES = (4, 5, 2, 7)
_FEW_PAIRS = 512  # below this many candidates the middle-sample screen stops
_CHUNK_PAIRS = 1 << 15  # pairs screened at once: the float32 temporaries stay in the L2 cache
_BATCH_PAIRS = 1 << 15  # end-screen survivors screened at once by middle samples


def _unit_directions(vec_x, vec_y):
    """Unit limb directions in float32, exactly as the original's
    `vec_raw / (np.linalg.norm(vec_raw, ord=2, axis=-1, keepdims=True) + 1e-6)`: the norm is
    sqrt(x*x + y*y) in float32 (what np.linalg.norm computes for ord 2 on one axis)."""
    denominator = np.sqrt(vec_x * vec_x + vec_y * vec_y) + 1e-6
    return vec_x / denominator, vec_y / denominator


def _end_passes(a_x, a_y, b_x, b_y, paf_a, paf_b, min_paf_score):
    """Whether samples 0 and 9 of candidate limbs a -> b pass (bool arrays; the second None when paf_b
    is). Arguments broadcast: (N,) pairs, or (1, n) against (m, 1). The float32 sample positions round
    to a and b, so the PAF there is the per-keypoint paf_a = (x, y), paf_b; the original's float32 ops."""
    unit_x, unit_y = _unit_directions(b_x - a_x, b_y - a_y)
    pass_a = paf_a[0] * unit_x + paf_a[1] * unit_y > min_paf_score
    return pass_a, None if paf_b is None else paf_b[0] * unit_x + paf_b[1] * unit_y > min_paf_score


def _flat_pairs(offsets, limbs, types):
    """Every (limb, a, b) pair of the given limbs, (N,) each, in the original's order (limb, then
    b-major, a-minor); a and b are rows of all_keypoints. types: (L, 2) keypoint types of every limb."""
    start_a, start_b = offsets[types[limbs, 0]], offsets[types[limbs, 1]]
    num_a = offsets[types[limbs, 0] + 1] - start_a
    sizes = num_a * (offsets[types[limbs, 1] + 1] - start_b)
    local = np.arange(sizes.sum()) - np.repeat(np.cumsum(sizes) - sizes, sizes)
    b_local, a_local = np.divmod(local, np.repeat(num_a, sizes))
    return np.repeat(limbs, sizes), np.repeat(start_a, sizes) + a_local, np.repeat(start_b, sizes) + b_local


def _screen_flat(keypoints, channels, limb, a, b, min_paf_score):
    """End-sample screen of (N,) pairs: (limb, a, b, failed end samples (int8)) of those with < 2.
    channels: (L, 2) PAF channels of every limb."""
    xs, ys, paf_at_kpt = keypoints
    channel_x, channel_y = channels[limb, 0], channels[limb, 1]
    paf_a = paf_at_kpt[a, channel_x], paf_at_kpt[a, channel_y]
    paf_b = paf_at_kpt[b, channel_x], paf_at_kpt[b, channel_y]
    pass_a, pass_b = _end_passes(xs[a], ys[a], xs[b], ys[b], paf_a, paf_b, min_paf_score)
    keep = np.flatnonzero(pass_a | pass_b)
    return limb[keep], a[keep], b[keep], (~(pass_a[keep] & pass_b[keep])).astype(np.int8)


def _screen_matrix(keypoints, channels, limb, rows_a, rows_b, min_paf_score):
    """End-sample screen of the pairs rows_a x rows_b of one limb, as (b, a) matrices of at most
    _CHUNK_PAIRS pairs (small enough for the CPU caches). Only keypoints whose PAF is longer than
    min_paf_score can pass their end sample, so pairs of two such weak keypoints, which fail both,
    are never formed: the matrices cover (strong b) x (all a) and (weak b) x (strong a). Yields
    (limb, a, b, failures) of the pairs with at most one failed end sample, chunk by chunk."""
    xs, ys, paf_at_kpt = keypoints
    channels = channels[limb]
    paf_a, paf_b = paf_at_kpt[rows_a][:, channels].T, paf_at_kpt[rows_b][:, channels].T  # (2, n), (2, m)
    strong_a, strong_b = _can_pass(paf_a, min_paf_score), _can_pass(paf_b, min_paf_score)
    for b_part, a_part, test_b in ((strong_b, np.ones_like(strong_a), True), (~strong_b, strong_a, False)):
        a_rows, b_rows, b_paf = rows_a[a_part], rows_b[b_part], paf_b[:, b_part]
        a_args = xs[a_rows][None, :], ys[a_rows][None, :]
        a_paf = paf_a[:, a_part][:, None, :]
        step = max(1, _CHUNK_PAIRS // max(1, len(a_rows)))
        for start in range(0, len(b_rows) if len(a_rows) else 0, step):
            rows = slice(start, start + step)
            b_x, b_y = xs[b_rows[rows]][:, None], ys[b_rows[rows]][:, None]
            pass_a, pass_b = _end_passes(
                *a_args, b_x, b_y, a_paf, b_paf[:, rows, None] if test_b else None, min_paf_score
            )
            # flatnonzero + divmod: several times faster than a 2-D np.nonzero.
            keep = np.flatnonzero(pass_a | pass_b if test_b else pass_a)
            b_local, a_local = np.divmod(keep, len(a_rows))
            failures = ~(pass_a & pass_b).reshape(-1)[keep] if test_b else np.ones(len(keep), bool)
            yield np.full(len(keep), limb), a_rows[a_local], b_rows[rows][b_local], failures.astype(np.int8)


def _can_pass(paf, min_paf_score):
    """(n,) bool: whether keypoints with PAF paf (2, n) can pass an end sample in some direction. A float32
    dot with a unit vector exceeds |paf| by a few ulps at most: the margin 1e-4 keeps all that could."""
    if min_paf_score <= 0:
        return np.ones(paf.shape[1], bool)
    norm2 = np.square(paf[0], dtype=np.float64) + np.square(paf[1], dtype=np.float64)
    return norm2 > (min_paf_score * (1 - 1e-4)) ** 2


def _screen_by_middle_samples(field, keypoints, limb, a, b, failures, min_paf_score):
    """Drop candidates once 2 of their samples fail (they can reach at most 8 of 10), checking
    a few middle samples one at a time, each computed exactly as in the original's (N, 10)
    block. Exact: it only removes pairs the original rejects. Returns (limb, a, b)."""
    xs, ys, _ = keypoints
    for sample in _SCREEN_SAMPLES:
        if len(a) < _FEW_PAIRS:  # scoring them directly is cheaper than another round
            break
        start_x, start_y = xs[a], ys[a]
        vec_x, vec_y = xs[b] - start_x, ys[b] - start_y
        # float32 steps (vec / 9) times the float32 sample number plus a, as the original.
        x = (1 / (POINTS_PER_LIMB - 1) * vec_x * np.float32(sample) + start_x).round().astype(np.int64)
        y = (1 / (POINTS_PER_LIMB - 1) * vec_y * np.float32(sample) + start_y).round().astype(np.int64)
        field_x, field_y = field(x, y, limb)
        unit_x, unit_y = _unit_directions(vec_x, vec_y)
        failures = failures + ~(field_x * unit_x + field_y * unit_y > min_paf_score)
        keep = np.flatnonzero(failures < 2)
        limb, a, b, failures = limb[keep], a[keep], b[keep], failures[keep]
    return limb, a, b


def _paf_pairs(pafs, tables):
    """A function (x (N,), y (N,), limb (N,)) -> the limb's PAF x and y at those pixels, (N,) float32
    each. When every limb's (x, y) channels are an aligned pair (2k, 2k + 1), both come from one
    8-byte gather: one random memory access instead of two."""
    width, num_channels = pafs.shape[1], pafs.shape[2]
    flat = pafs.reshape(-1)
    channels = tables.channels
    if tables.paired_channels:
        words = flat.view(np.uint64)

        def gather(x, y, limb):
            both = words[((y * width + x) * num_channels + channels[limb, 0]) // 2].view(np.float32)
            return both[..., 0::2], both[..., 1::2]

        return gather
    return lambda x, y, limb: tuple(flat[(y * width + x) * num_channels + channels[limb, k]] for k in (0, 1))


def _batched(chunks):
    """Consecutive (limb, a, b, failures) chunks joined into batches of at least _BATCH_PAIRS pairs: the
    middle-sample screen then makes its few NumPy calls per batch, not per chunk."""
    pending = []
    for chunk in chunks:
        pending.append(chunk)
        if sum(len(part[1]) for part in pending) >= _BATCH_PAIRS:
            yield tuple(np.concatenate(column) for column in zip(*pending))
            pending = []
    if pending:
        yield tuple(np.concatenate(column) for column in zip(*pending))


def _score_limbs(field, keypoints, limb, a, b, min_paf_score):
    """Original limb score: 10 float32 samples from a to b, rounded half-to-even; mean of the
    PAF·direction dots that exceed min_paf_score. Returns (scores (N,) float64, valid (N,)
    bool) with valid = mean > 0 and more than 80 % of the samples passing."""
    xs, ys, _ = keypoints
    vec_x, vec_y = xs[b] - xs[a], ys[b] - ys[a]
    unit_x, unit_y = _unit_directions(vec_x, vec_y)
    # (10, N), sample number first, so that every operation runs along the long axis; float32 steps
    # (vec / 9) times the float32 sample number plus a, as the original.
    grid = np.arange(POINTS_PER_LIMB, dtype=np.float32)[:, None]
    x = (1 / (POINTS_PER_LIMB - 1) * vec_x * grid + xs[a]).round().astype(np.int64)
    y = (1 / (POINTS_PER_LIMB - 1) * vec_y * grid + ys[a]).round().astype(np.int64)
    field_x, field_y = field(x, y, limb)
    dots = field_x * unit_x + field_y * unit_y
    passing = dots > min_paf_score
    valid_num = passing.sum(0)
    # Summed as a C-contiguous (N, 10) block, so that the float32 row sums add in the original's order.
    scores = np.ascontiguousarray((dots * passing).T).sum(1) / (valid_num + 1e-6)  # float64, as the original
    success_ratio = valid_num / POINTS_PER_LIMB
    return scores, (scores > 0) & (success_ratio > 0.8)


def _valid_limbs(pafs, offsets, xy, paf_at_kpt, min_paf_score, tables):
    """The original's valid candidate limbs, (limb, a, b, scores) (N,) each, in its order (limb, then
    b-major, a-minor). Pairs are screened (end samples, then middle samples), and the survivors
    scored exactly; screening only drops pairs with 2 failed samples, which the original rejects.
    tables: the schema's :class:`lwop_jax.inference.assembly.LimbTables`."""
    keypoints = (np.ascontiguousarray(xy[:, 0]), np.ascontiguousarray(xy[:, 1]), paf_at_kpt)
    field = _paf_pairs(pafs, tables)
    counts = offsets[1:] - offsets[:-1]
    sizes = counts[tables.types[:, 0]] * counts[tables.types[:, 1]]
    pairs = _flat_pairs(offsets, np.flatnonzero((sizes > 0) & (sizes <= _FLAT_PAIRS)), tables.types)
    survivors = [pairs] if len(pairs[0]) <= _FEW_PAIRS else []  # few pairs: scoring them is cheapest
    chunks = [] if survivors else [_screen_flat(keypoints, tables.channels, *pairs, min_paf_score)]
    for limb in np.flatnonzero(sizes > _FLAT_PAIRS):
        rows_a, rows_b = (np.arange(offsets[t], offsets[t + 1]) for t in tables.types[limb])
        screened = _screen_matrix(keypoints, tables.channels, limb, rows_a, rows_b, min_paf_score)
        chunks = itertools.chain(chunks, screened)
    survivors += [_screen_by_middle_samples(field, keypoints, *batch, min_paf_score) for batch in _batched(chunks)]
    limb, a, b = (np.concatenate(column) for column in zip(*survivors))
    scores, valid = _score_limbs(field, keypoints, limb, a, b, min_paf_score)
    order = np.lexsort((a[valid], b[valid], limb[valid]))
    return limb[valid][order], a[valid][order], b[valid][order], scores[valid][order]


def group_keypoints(all_keypoints, counts, pafs, pose_entry_size=None, min_paf_score=0.05, schema=None):
    """Original group_keypoints on the output of extract_peaks, for a keypoint schema (None: coco18).

    all_keypoints: (N, 4) float64 [x, y, score, id] grouped by type; counts: (K,) per type;
    pafs: (H, W, 2 L) float32 on the heatmap grid.
    Returns (pose_entries (P, K + 2) float64 — [0:K] keypoint ids or -1, [K] score, [K + 1]
    keypoint count; coco18: (P, 20) — and all_keypoints). P may be 0 (shape (0, K + 2); the original
    returns an empty (0,) array there).
    """
    tables = limb_tables(schema)
    entry_size = tables.num_keypoints + 2
    if pose_entry_size not in (None, entry_size):
        raise ValueError(f'pose_entry_size must be {entry_size}, got {pose_entry_size}')
    pafs = _check_pafs(pafs, None, 2 * len(tables.types))
    all_keypoints = np.asarray(all_keypoints, dtype=np.float64).reshape(-1, 4)
    counts = np.asarray(counts, dtype=np.int64)
    if counts.shape != (tables.num_keypoints,) or counts.sum() != len(all_keypoints):
        raise ValueError(
            f'counts must have shape ({tables.num_keypoints},) and sum to '
            f'len(all_keypoints) = {len(all_keypoints)}, got {counts}'
        )
    offsets = np.zeros(len(counts) + 1, np.int64)
    np.cumsum(counts, out=offsets[1:])
    xy = all_keypoints[:, :2].astype(np.float32)
    rows = xy.astype(np.int64)
    paf_at_kpt = pafs[rows[:, 1], rows[:, 0]]  # (N, 2 L)

    limb, a, b, scores = _valid_limbs(pafs, offsets, xy, paf_at_kpt, min_paf_score, tables)
    ids = all_keypoints[:, 3].astype(np.int64).tolist()  # = row index, as in the original
    connections = connection_nms(limb, a, b, scores, ids, len(tables.types))
    poses = assemble(connections, all_keypoints[:, 2].tolist(), tables)
    count, score = poses[:, -1], poses[:, -2]
    dropped = (count < 3) | (score / np.where(count == 0, 1, count) < 0.2)
    return poses[~dropped], all_keypoints


# ----------------------------------------------------------------------------------------------
# Public entry points
# ----------------------------------------------------------------------------------------------


def poses_from_entries(pose_entries, all_keypoints):
    """(P, K + 2) pose entries + (N, 4) keypoints -> Poses (keypoints (P, K, 3) float32)."""
    all_keypoints = np.asarray(all_keypoints, dtype=np.float64).reshape(-1, 4)
    pose_entries = np.asarray(pose_entries, dtype=np.float64)
    pose_entries = pose_entries.reshape(-1, pose_entries.shape[-1] if pose_entries.size else POSE_ENTRY_SIZE)
    ids = pose_entries[:, :-2].astype(np.int64)
    found = ids >= 0
    keypoints = np.full(ids.shape + (3,), -1, np.float32)
    keypoints[..., 2] = 0
    keypoints[found] = all_keypoints[ids[found], :3]
    return Poses(
        keypoints=keypoints, scores=pose_entries[:, -2].copy(), num_keypoints=pose_entries[:, -1].astype(np.int64)
    )


def decode(heatmaps, pafs, min_paf_score=0.05, schema=None):
    """Decode one image's maps into people.

    heatmaps: (H, W, K + 1) float32 (K keypoints + background; coco18: 19); pafs: (H, W, 2 L) float32,
    on the same grid (the full-resolution maps of val.py, or the x4 maps of demo.py). schema: the
    model's keypoint schema (None: coco18). Inputs are not modified. Returns Poses with coordinates in
    pixels of that grid.
    """
    tables = limb_tables(schema)
    heatmaps = check_heatmaps(heatmaps, tables.num_keypoints)
    pafs = _check_pafs(pafs, heatmaps.shape[:2], 2 * len(tables.types))
    all_keypoints, counts = extract_peaks(heatmaps, tables.num_keypoints)
    pose_entries, all_keypoints = group_keypoints(
        all_keypoints, counts, pafs, min_paf_score=min_paf_score, schema=schema
    )
    if not len(pose_entries):
        pose_entries = np.zeros((0, tables.num_keypoints + 2))
    return poses_from_entries(pose_entries, all_keypoints)


def to_coco_keypoints(poses, schema=None, dataset_names=COCO_KEYPOINT_NAMES):
    """val.py convert_to_coco_format on decoded poses, for any schema.

    Returns coco_keypoints (N, 3 D) float64 — the dataset's keypoint order (``dataset_names``, COCO's
    17 by default), (x + 0.5, y + 0.5, 1) per found keypoint, (0, 0, 0) otherwise, derived keypoints
    (coco18's neck) dropped — and scores (N,) float64 = pose score * max(0, count - 1). Coordinates
    stay on the map grid.
    """
    own, dataset_index = _dataset_columns(schema, tuple(dataset_names))
    n, size = len(poses.scores), len(dataset_names)
    kpts = poses.keypoints[:, own, :].astype(np.float64)  # (N, direct keypoints, 3)
    found = kpts[..., 0] >= 0
    triples = np.zeros((n, size, 3))
    triples[:, dataset_index, 0] = np.where(found, kpts[..., 0] + 0.5, 0)
    triples[:, dataset_index, 1] = np.where(found, kpts[..., 1] + 0.5, 0)
    triples[:, dataset_index, 2] = found
    counts = poses.num_keypoints.astype(np.float64)
    scores = poses.scores * np.maximum(0, counts - 1)
    return triples.reshape(n, 3 * size), scores


@functools.lru_cache(maxsize=32)
def _dataset_columns(schema, dataset_names):
    """(the schema's keypoints that are dataset keypoints, their dataset columns), two lists. Cached:
    loading the default schema reads its file, several times the cost of a sparse image's decode."""
    layout = (schema or load_schema()).dataset_layout(dataset_names, 'the evaluation set')
    own = [k for k, index in enumerate(layout.direct) if index >= 0]
    return own, [layout.direct[k] for k in own]
