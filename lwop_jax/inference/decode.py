"""Pose decoder: heatmap peaks + greedy PAF grouping, bit-identical to the original, vectorised.

Reproduces `modules/keypoints.py` of the original (`extract_keypoints` over the 18 keypoint
channels with a running id, in :mod:`lwop_jax.inference.peaks`, then the current, partly vectorised
`group_keypoints`) and
`val.py` `convert_to_coco_format`. What the original does channel by channel, peak by peak,
pair by pair or pose by pose is done here with whole-array NumPy operations: all 18 channels
at once, the peak NMS as a few vectorised rounds, the limb candidates of all limbs in one
batch. Python loops remain only over the 19 limbs and inside the greedy connection NMS (over
the accepted connections of a limb, a handful).

Speed comes mostly from screening: a candidate limb needs >= 9 of its 10 PAF samples to pass,
so pairs are dropped as soon as 2 samples fail, starting with the two end samples (which sit
on the keypoints themselves and need no sampling). The survivors are then scored exactly as
the original scores them. Screening only removes pairs the original rejects, so the result is
unchanged.

Exactness notes (why the code looks the way it does):
* Every float operation that feeds a comparison or an output is the same NumPy operation on the
  same dtypes as in the original (float32 limb sampling, `np.round` half-to-even, float32
  `sum(1)` over a C-contiguous (N, 10) block, float64 division by `valid_num + 1e-6`, float64
  pose scores), so results are bit-identical, not merely close.
* Connection NMS calls `np.argsort` (default kind) on exactly the float64 score array the
  original sorts, in the same order, so ties between equal scores resolve identically.
* The decoder never writes into the caller's maps (the original zeroes heatmap values < 0.1 in
  place; here the threshold is folded into the peak test instead).

This module is part of the CPU inference path: NumPy and the standard library only.
"""

from dataclasses import dataclass

import numpy as np

from lwop_jax.inference.peaks import check_heatmaps, extract_peaks
from lwop_jax.skeleton import BODY_PARTS_KPT_IDS, BODY_PARTS_PAF_IDS, INTERNAL_TO_COCO, NUM_KEYPOINTS, NUM_PAFS

POINTS_PER_LIMB = 10  # PAF samples along each candidate limb
POSE_ENTRY_SIZE = 20  # 18 keypoint ids, total score, keypoint count
EAR_LIMBS = (17, 18)  # shoulder -> ear limbs: only fill empty slots


@dataclass(frozen=True)
class Poses:
    """Decoded people, in the original's order.

    keypoints:     (N, 18, 3) float32, internal keypoint order; (x, y, peak score) on the map
                   grid; missing keypoints are (-1, -1, 0).
    scores:        (N,) float64, the original `pose_entries[:, 18]` (sum of keypoint and limb
                   scores).
    num_keypoints: (N,) int64, the original `pose_entries[:, 19]` (ear keypoints added by the
                   shoulder-ear limbs are not counted, as in the original).
    """

    keypoints: np.ndarray
    scores: np.ndarray
    num_keypoints: np.ndarray

    def __len__(self):
        return len(self.scores)


# ----------------------------------------------------------------------------------------------
# Input validation
# ----------------------------------------------------------------------------------------------


def _check_pafs(pafs, grid_hw):
    pafs = np.asarray(pafs)
    if pafs.ndim != 3 or pafs.shape[2] != NUM_PAFS:
        raise ValueError(f'pafs must have shape (H, W, {NUM_PAFS}), got {pafs.shape}')
    if grid_hw is not None and pafs.shape[:2] != tuple(grid_hw):
        raise ValueError(
            f'heatmaps and pafs must share one grid: heatmaps are {tuple(grid_hw)} (H, W), pafs are {pafs.shape[:2]}'
        )
    return np.asarray(pafs, dtype=np.float32)


# ----------------------------------------------------------------------------------------------
# Limb candidates (original group_keypoints, scoring part, all limbs at once)
# ----------------------------------------------------------------------------------------------


def _unit_directions(vec_x, vec_y):
    """Unit limb directions in float32, exactly as the original's
    `vec_raw / (np.linalg.norm(vec_raw, ord=2, axis=-1, keepdims=True) + 1e-6)`: the norm is
    sqrt(x*x + y*y) in float32 (what np.linalg.norm computes for ord 2 on one axis)."""
    denominator = np.sqrt(vec_x * vec_x + vec_y * vec_y) + 1e-6
    return vec_x / denominator, vec_y / denominator


def _screen_limb_by_end_samples(xy_a, xy_b, paf_a, paf_b, min_paf_score):
    """Candidates of one limb whose end samples do not both fail.

    Samples 0 and 9 lie exactly on keypoints a and b (the float32 sample positions round to
    them), so their PAF values are the per-keypoint paf_a (n, 2) and paf_b (m, 2); only the
    direction is per pair. Same float32 operations as the original, so the same booleans.
    Returns (b_local, a_local, failures) for the kept pairs, in b-major, a-minor order.
    """
    vec_x = xy_b[:, None, 0] - xy_a[None, :, 0]  # (m, n), b-major
    vec_y = xy_b[:, None, 1] - xy_a[None, :, 1]
    unit_x, unit_y = _unit_directions(vec_x, vec_y)
    pass_a = paf_a[None, :, 0] * unit_x + paf_a[None, :, 1] * unit_y > min_paf_score
    pass_b = paf_b[:, None, 0] * unit_x + paf_b[:, None, 1] * unit_y > min_paf_score
    b_local, a_local = np.nonzero(pass_a | pass_b)
    failures = 2 - pass_a[b_local, a_local].astype(np.int8) - pass_b[b_local, a_local]
    return b_local, a_local, failures


def _hopeful_candidates(offsets, xy, paf_at_kpt, min_paf_score):
    """Candidate limbs that survive the end-sample test, over all limbs.

    A limb needs >= 9 of its 10 samples to pass, so pairs whose two end samples both fail are
    dropped without sampling the PAF along them. Returns (limb, a, b, failures), (N,) arrays
    in the original's candidate order (limb, then b-major, a-minor); failures counts the
    failed end samples (0 or 1).
    """
    parts = []
    for limb, ((type_a, type_b), channels) in enumerate(zip(BODY_PARTS_KPT_IDS, BODY_PARTS_PAF_IDS)):
        rows_a = np.arange(offsets[type_a], offsets[type_a + 1])
        rows_b = np.arange(offsets[type_b], offsets[type_b + 1])
        if len(rows_a) == 0 or len(rows_b) == 0:
            continue
        b_local, a_local, failures = _screen_limb_by_end_samples(
            xy[rows_a], xy[rows_b], paf_at_kpt[rows_a][:, channels], paf_at_kpt[rows_b][:, channels], min_paf_score
        )
        parts.append((np.full(len(a_local), limb), rows_a[a_local], rows_b[b_local], failures))
    if not parts:
        return tuple(np.zeros(0, np.int64) for _ in range(4))
    return tuple(np.concatenate(column) for column in zip(*parts))


# Middle samples first: far from both keypoints, they reject wrong pairs soonest.
_SCREEN_SAMPLES = (4, 5, 2, 7)


def _screen_by_middle_samples(pafs, xy, limb, a, b, failures, min_paf_score):
    """Drop candidates once 2 of their samples fail (they can reach at most 8 of 10), checking
    a few middle samples one at a time, each computed exactly as in the original's (N, 10)
    block. Exact: it only removes pairs the original rejects. Returns (limb, a, b)."""
    flat = pafs.reshape(-1)
    width, num_channels = pafs.shape[1], pafs.shape[2]
    channel_x = np.take(np.asarray(BODY_PARTS_PAF_IDS)[:, 0], limb)
    channel_y = np.take(np.asarray(BODY_PARTS_PAF_IDS)[:, 1], limb)
    start_x, start_y = xy[a, 0], xy[a, 1]
    vec_x, vec_y = xy[b, 0] - start_x, xy[b, 1] - start_y
    steps_x = 1 / (POINTS_PER_LIMB - 1) * vec_x  # float32, as the original
    steps_y = 1 / (POINTS_PER_LIMB - 1) * vec_y
    unit_x, unit_y = _unit_directions(vec_x, vec_y)
    table = (limb, a, b, failures, channel_x, channel_y, start_x, start_y, steps_x, steps_y, unit_x, unit_y)
    for sample in _SCREEN_SAMPLES:
        (limb, a, b, failures, channel_x, channel_y, start_x, start_y, steps_x, steps_y, unit_x, unit_y) = table
        x = (steps_x * np.float32(sample) + start_x).round().astype(np.int64)
        y = (steps_y * np.float32(sample) + start_y).round().astype(np.int64)
        pixel = (y * width + x) * num_channels
        dot = flat[pixel + channel_x] * unit_x + flat[pixel + channel_y] * unit_y
        failures = failures + (~(dot > min_paf_score))
        keep = np.flatnonzero(failures < 2)
        table = tuple(column[keep] for column in table[:3] + (failures,) + table[4:])
    return table[0], table[1], table[2]


def _score_limbs(pafs, limb, a, b, xy, min_paf_score):
    """Original limb score: 10 float32 samples from a to b, rounded half-to-even; mean of the
    PAF·direction dots that exceed min_paf_score. Returns (scores (N,) float64, valid (N,)
    bool) with valid = mean > 0 and more than 80 % of the samples passing."""
    vec = xy[b] - xy[a]  # (N, 2) float32
    unit_x, unit_y = _unit_directions(vec[:, 0], vec[:, 1])
    steps = 1 / (POINTS_PER_LIMB - 1) * vec  # float32, as the original
    grid = np.arange(POINTS_PER_LIMB, dtype=np.float32)[None, :, None]
    points = (steps[:, None, :] * grid + xy[a][:, None, :]).round().astype(np.int64)
    limb_paf = np.asarray(BODY_PARTS_PAF_IDS)[limb]
    pixel = (points[..., 1] * pafs.shape[1] + points[..., 0]) * pafs.shape[2]  # (N, 10)
    flat = pafs.reshape(-1)
    field_x = flat[pixel + limb_paf[:, :1]]
    field_y = flat[pixel + limb_paf[:, 1:]]
    # (N, 10) float32, C order: the row sums below then add in the original's order.
    dots = field_x * unit_x[:, None] + field_y * unit_y[:, None]
    passing = dots > min_paf_score
    valid_num = passing.sum(1)
    scores = (dots * passing).sum(1) / (valid_num + 1e-6)  # float64, as the original
    success_ratio = valid_num / POINTS_PER_LIMB
    return scores, (scores > 0) & (success_ratio > 0.8)


def _connection_nms(a, b, scores):
    """Original connections_nms: best-first (default np.argsort of the scores, reversed), keep
    a connection when neither of its keypoints is used yet. a, b: (C,) rows; scores (C,)
    float64 in candidate order. Returns the kept (a, b, scores) in best-first order."""
    order = scores.argsort()[::-1]
    a, b, scores = a[order], b[order], scores[order]
    used_a, used_b, kept = set(), set(), []
    for t, (i, j) in enumerate(zip(a.tolist(), b.tolist())):
        if i not in used_a and j not in used_b:
            kept.append(t)
            used_a.add(i)
            used_b.add(j)
    return a[kept], b[kept], scores[kept]


# ----------------------------------------------------------------------------------------------
# Pose assembly (original group_keypoints, greedy part, one limb at a time)
# ----------------------------------------------------------------------------------------------


def _attach_limb(poses, type_a, type_b, conn_a, conn_b, conn_scores, kpt_scores):
    """Ordinary limb: a pose holding keypoint conn_a[i] in slot type_a gets conn_b[i] and the
    scores; connections that match no pose start a new 2-keypoint pose, in connection order.

    poses: (P, 20) float64. Within one limb the conn_a are distinct, so each pose matches at
    most one connection and the original's sequential loop equals this batch update.
    """
    match = poses[:, type_a][:, None] == conn_a[None, :]  # (P, C)
    pose_idx, conn_idx = np.nonzero(match)
    poses[pose_idx, type_b] = conn_b[conn_idx]
    poses[pose_idx, -1] += 1
    poses[pose_idx, -2] += kpt_scores[conn_b[conn_idx]] + conn_scores[conn_idx]
    new = ~match.any(0)
    fresh = np.full((int(new.sum()), POSE_ENTRY_SIZE), -1.0)
    fresh[:, type_a] = conn_a[new]
    fresh[:, type_b] = conn_b[new]
    fresh[:, -1] = 2
    fresh[:, -2] = (kpt_scores[conn_a[new]] + kpt_scores[conn_b[new]]) + conn_scores[new]
    return np.concatenate([poses, fresh])


def _fill_ear(poses, type_a, type_b, conn_a, conn_b):
    """Shoulder-ear limb: only fills an empty slot, score and count unchanged. A pose whose
    shoulder is conn_a[i] and ear empty gets the ear; else a pose whose ear is conn_b[i] and
    shoulder empty gets the shoulder. With distinct conn_a and conn_b, every pose matches at
    most one connection and an update never creates a new match, so order does not matter."""
    shoulder, ear = poses[:, type_a], poses[:, type_b]
    by_shoulder = (shoulder[:, None] == conn_a[None, :]) & (ear == -1)[:, None]
    by_ear = (ear[:, None] == conn_b[None, :]) & (shoulder == -1)[:, None]
    pose_idx, conn_idx = np.nonzero(by_shoulder)
    poses[pose_idx, type_b] = conn_b[conn_idx]
    pose_idx, conn_idx = np.nonzero(by_ear & ~by_shoulder.any(1)[:, None])
    poses[pose_idx, type_a] = conn_a[conn_idx]
    return poses


def group_keypoints(all_keypoints, counts, pafs, pose_entry_size=20, min_paf_score=0.05):
    """Original group_keypoints on the output of extract_peaks.

    all_keypoints: (K, 4) float64 [x, y, score, id] grouped by type; counts: (18,) per type;
    pafs: (H, W, 38) float32 on the heatmap grid.
    Returns (pose_entries (P, 20) float64 — [0:18] keypoint ids or -1, [18] score, [19]
    keypoint count — and all_keypoints). P may be 0 (shape (0, 20); the original returns an
    empty (0,) array there).
    """
    if pose_entry_size != POSE_ENTRY_SIZE:
        raise ValueError(f'pose_entry_size must be {POSE_ENTRY_SIZE}, got {pose_entry_size}')
    pafs = _check_pafs(pafs, None)
    all_keypoints = np.asarray(all_keypoints, dtype=np.float64).reshape(-1, 4)
    counts = np.asarray(counts, dtype=np.int64)
    if counts.shape != (NUM_KEYPOINTS,) or counts.sum() != len(all_keypoints):
        raise ValueError(
            f'counts must have shape ({NUM_KEYPOINTS},) and sum to '
            f'len(all_keypoints) = {len(all_keypoints)}, got {counts}'
        )
    offsets = np.concatenate([[0], np.cumsum(counts)])
    xy = all_keypoints[:, :2].astype(np.float32)
    kpt_scores = all_keypoints[:, 2]
    rows = xy.astype(np.int64)
    paf_at_kpt = pafs[rows[:, 1], rows[:, 0]]  # (K, 38)

    limb, a, b, failures = _hopeful_candidates(offsets, xy, paf_at_kpt, min_paf_score)
    limb, a, b = _screen_by_middle_samples(pafs, xy, limb, a, b, failures, min_paf_score)
    scores, valid = _score_limbs(pafs, limb, a, b, xy, min_paf_score)
    limb, a, b, scores = limb[valid], a[valid], b[valid], scores[valid]

    poses = np.zeros((0, POSE_ENTRY_SIZE))
    bounds = np.searchsorted(limb, np.arange(len(BODY_PARTS_KPT_IDS) + 1))
    for part_id, (type_a, type_b) in enumerate(BODY_PARTS_KPT_IDS):
        part = slice(bounds[part_id], bounds[part_id + 1])
        if part.start == part.stop:
            continue
        conn_a, conn_b, conn_scores = _connection_nms(a[part], b[part], scores[part])
        ids_a = all_keypoints[conn_a, 3].astype(np.int64)  # = row index, as in the original
        ids_b = all_keypoints[conn_b, 3].astype(np.int64)
        if part_id in EAR_LIMBS:
            poses = _fill_ear(poses, type_a, type_b, ids_a, ids_b)
        else:
            poses = _attach_limb(poses, type_a, type_b, ids_a, ids_b, conn_scores, kpt_scores)

    count, score = poses[:, -1], poses[:, -2]
    dropped = (count < 3) | (score / np.where(count == 0, 1, count) < 0.2)
    return poses[~dropped], all_keypoints


# ----------------------------------------------------------------------------------------------
# Public entry points
# ----------------------------------------------------------------------------------------------


def poses_from_entries(pose_entries, all_keypoints):
    """(P, 20) pose entries + (K, 4) keypoints -> Poses (keypoints (P, 18, 3) float32)."""
    pose_entries = np.asarray(pose_entries, dtype=np.float64).reshape(-1, POSE_ENTRY_SIZE)
    ids = pose_entries[:, :NUM_KEYPOINTS].astype(np.int64)
    found = ids >= 0
    keypoints = np.full(ids.shape + (3,), -1, np.float32)
    keypoints[..., 2] = 0
    keypoints[found] = all_keypoints[ids[found], :3]
    return Poses(
        keypoints=keypoints, scores=pose_entries[:, -2].copy(), num_keypoints=pose_entries[:, -1].astype(np.int64)
    )


def decode(heatmaps, pafs, min_paf_score=0.05):
    """Decode one image's maps into people.

    heatmaps: (H, W, 19) float32 (18 keypoints + background); pafs: (H, W, 38) float32, on the
    same grid (the full-resolution maps of val.py, or the x4 maps of demo.py). Inputs are not
    modified. Returns Poses with coordinates in pixels of that grid.
    """
    heatmaps = check_heatmaps(heatmaps)
    pafs = _check_pafs(pafs, heatmaps.shape[:2])
    all_keypoints, counts = extract_peaks(heatmaps)
    pose_entries, all_keypoints = group_keypoints(all_keypoints, counts, pafs, min_paf_score=min_paf_score)
    return poses_from_entries(pose_entries, all_keypoints)


def to_coco_keypoints(poses):
    """val.py convert_to_coco_format on decoded poses.

    Returns coco_keypoints (N, 51) float64 — COCO order (x + 0.5, y + 0.5, 1) per found
    keypoint, (0, 0, 0) otherwise, the neck dropped — and scores (N,) float64 =
    pose score * max(0, count - 1). Coordinates stay on the map grid.
    """
    n = len(poses.scores)
    internal = [k for k, coco in enumerate(INTERNAL_TO_COCO) if coco >= 0]
    coco_index = [INTERNAL_TO_COCO[k] for k in internal]
    kpts = poses.keypoints[:, internal, :].astype(np.float64)  # (N, 17, 3)
    found = kpts[..., 0] >= 0
    triples = np.zeros((n, 17, 3))
    triples[:, coco_index, 0] = np.where(found, kpts[..., 0] + 0.5, 0)
    triples[:, coco_index, 1] = np.where(found, kpts[..., 1] + 0.5, 0)
    triples[:, coco_index, 2] = found
    counts = poses.num_keypoints.astype(np.float64)
    scores = poses.scores * np.maximum(0, counts - 1)
    return triples.reshape(n, 51), scores
