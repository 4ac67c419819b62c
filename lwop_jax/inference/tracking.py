"""Pose tracking across video frames, with the original's rules (modules/pose.py, one_euro_filter.py).

* Similarity of two poses = number of keypoints found in both whose OKS-like similarity
  exp(-d^2 / (2 (area + eps) var_k)) exceeds 0.5, with the original's per-keypoint sigmas
  (var_k = (2 sigma_k)^2) and area = the larger of the two boxes' w * h.
* Current poses are matched in decreasing pose score (confident first); each takes the unmatched
  previous pose with the most similar keypoints (the first one on ties) when there are at least
  ``threshold`` (3) of them, else it gets a new id. New ids increase and are never reused.
* Optional smoothing: a One-Euro filter per keypoint coordinate (freq 60, min cutoff 1,
  beta 0.05, d cutoff 1: the original's defaults). A keypoint continues its filter only when its
  pose was matched and the keypoint was found in the previous frame; otherwise it starts a fresh
  filter (whose first output is the input).

Differences from the original, on purpose: keypoints stay float (the original tracks and smooths
int()-truncated pixels and writes the filtered values back into an int32 array); the boxes are
still those of the truncated keypoints. Ids start at 0 per tracker instead of a class-global
counter shared by every video of the process.

CPU inference path: NumPy only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from lwop_jax.inference.results import PoseResult, bounding_boxes, found_mask
from lwop_jax.skeleton import POSE_VARS

SIMILAR_KEYPOINT_THRESHOLD = 0.5  # a keypoint is similar when its OKS-like value is above this
MIN_SIMILAR_KEYPOINTS = 3  # the original propagate/track_poses threshold


# ------------------------------------------------------------------------------------------------
# One-Euro filter (Casiez et al. 2012), the original's variant, vectorised over coordinates
# ------------------------------------------------------------------------------------------------


def smoothing_factor(rate: float, cutoff) -> np.ndarray:
    """Exponential smoothing factor of a first-order low-pass at ``cutoff`` Hz sampled at ``rate``."""
    tau = 1 / (2 * math.pi * np.asarray(cutoff, dtype=np.float64))
    return 1 / (1 + tau * rate)


@dataclass
class OneEuroFilter:
    """Element-wise One-Euro filter over an array of coordinates, the original's parameters.

    Call it with x (any shape, fixed between calls) and an optional ``keep`` mask (broadcastable
    to x): where keep is False the element restarts (output = input), as a fresh filter of the
    original does on its first call.
    """

    freq: float = 60.0
    min_cutoff: float = 1.0
    beta: float = 0.05
    d_cutoff: float = 1.0
    x_raw: np.ndarray | None = None  # previous input
    dx_hat: np.ndarray | None = None  # filtered derivative
    x_hat: np.ndarray | None = None  # previous output

    def __call__(self, x, keep=True) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        keep = np.broadcast_to(np.asarray(keep, bool), x.shape)
        if self.x_raw is None:
            keep = np.zeros(x.shape, bool)
            self.x_raw, self.dx_hat, self.x_hat = x.copy(), np.zeros_like(x), x.copy()
        dx = (x - self.x_raw) * self.freq
        alpha_d = smoothing_factor(self.freq, self.d_cutoff)
        dx_hat = np.where(keep, alpha_d * dx + (1 - alpha_d) * self.dx_hat, 0.0)
        alpha = smoothing_factor(self.freq, self.min_cutoff + self.beta * np.abs(dx_hat))
        x_hat = np.where(keep, alpha * x + (1 - alpha) * self.x_hat, x)
        self.x_raw, self.dx_hat, self.x_hat = x.copy(), dx_hat, x_hat
        return x_hat.copy()

    def copy(self) -> OneEuroFilter:
        def clone(a):
            return None if a is None else a.copy()

        return OneEuroFilter(
            self.freq,
            self.min_cutoff,
            self.beta,
            self.d_cutoff,
            clone(self.x_raw),
            clone(self.dx_hat),
            clone(self.x_hat),
        )


@dataclass(frozen=True)
class TrackState:
    """What a frame's result hands to the next: the next new id and each pose's filter."""

    next_id: int
    filters: tuple  # one OneEuroFilter over (18, 2) per pose, or None when not smoothing


# ------------------------------------------------------------------------------------------------
# Matching
# ------------------------------------------------------------------------------------------------


def similar_keypoint_counts(
    current_keypoints,
    current_boxes,
    previous_keypoints,
    previous_boxes,
    threshold: float = SIMILAR_KEYPOINT_THRESHOLD,
    variances: np.ndarray = POSE_VARS,
) -> np.ndarray:
    """The original get_similarity for all pairs.

    *_keypoints: (C, K, 3) and (P, K, 3); *_boxes: (C, 4) and (P, 4) x, y, w, h; variances: (K,) the
    schema's (2 sigma)^2 (coco18's, the original's, by default).
    Returns (C, P) int64: keypoints found in both poses whose exp(-d^2 / (2 (area + eps) var))
    is above ``threshold``, area = max of the two box areas.
    """
    current_keypoints = np.asarray(current_keypoints, np.float64).reshape(-1, len(variances), 3)
    previous_keypoints = np.asarray(previous_keypoints, np.float64).reshape(-1, len(variances), 3)
    both = found_mask(current_keypoints)[:, None] & found_mask(previous_keypoints)[None]
    delta = current_keypoints[:, None, :, :2] - previous_keypoints[None, :, :, :2]
    distance = (delta**2).sum(-1)  # (C, P, K)
    area_c = np.asarray(current_boxes)[:, 2] * np.asarray(current_boxes)[:, 3]
    area_p = np.asarray(previous_boxes)[:, 2] * np.asarray(previous_boxes)[:, 3]
    area = np.maximum(area_c[:, None], area_p[None, :]).astype(np.float64)[..., None]
    similarity = np.exp(-distance / (2 * (area + np.spacing(1)) * np.asarray(variances, np.float64)))
    return (both & (similarity > threshold)).sum(-1)


def match_poses(counts: np.ndarray, scores: np.ndarray, threshold: int = MIN_SIMILAR_KEYPOINTS) -> np.ndarray:
    """Greedy matching of the original track_poses.

    counts: (C, P) similar-keypoint counts; scores: (C,) pose scores. Current poses are visited in
    decreasing score (stable: equal scores keep their order); each takes the still unmatched
    previous pose with the highest count (the first on ties), if that count >= threshold.
    Returns (C,) int64: the matched previous index, or -1.
    """
    matched = np.full(len(scores), -1, np.int64)
    available = np.ones(counts.shape[1], bool)
    for current in np.argsort(-np.asarray(scores), kind='stable'):
        candidates = np.where(available, counts[current], 0)
        if candidates.size == 0:
            continue
        best = int(np.argmax(candidates))  # first maximum, as the strict > loop
        if candidates[best] >= threshold:  # threshold >= 1, so count 0 never matches
            matched[current] = best
            available[best] = False
    return matched


def _assign_ids(matched, scores, previous_ids, next_id):
    """Ids for the current poses: a matched pose inherits; the others get new ids in the order
    they were visited (decreasing score), as the original's update_id calls."""
    ids = np.full(len(matched), -1, np.int64)
    for current in np.argsort(-np.asarray(scores), kind='stable'):
        if matched[current] >= 0:
            ids[current] = previous_ids[matched[current]]
        else:
            ids[current] = next_id
            next_id += 1
    return ids, next_id


def _smooth(current: PoseResult, previous: PoseResult | None, matched):
    """One-Euro smoothing of every found keypoint; returns (keypoints (C, 18, 3), filters)."""
    keypoints = current.keypoints.copy()
    found = found_mask(keypoints)
    previous_filters = previous.track_state.filters if previous is not None else None
    filters = []
    keep: np.ndarray | bool
    for n in range(len(keypoints)):
        m = matched[n]
        if m >= 0 and previous is not None and previous_filters is not None and previous_filters[m] is not None:
            keep = found_mask(previous.keypoints[m])[:, None]  # continue where it was found
            filter_ = previous_filters[m].copy()
        else:
            keep, filter_ = False, OneEuroFilter()
        smoothed = filter_(keypoints[n, :, :2], keep)
        keypoints[n, found[n], :2] = smoothed[found[n]]
        filters.append(filter_)
    return keypoints, tuple(filters)


def track_poses(
    previous: PoseResult | None, current: PoseResult, threshold: int = MIN_SIMILAR_KEYPOINTS, smooth: bool = False
) -> PoseResult:
    """Gives ``current`` track ids (and smoothed keypoints) from ``previous``, the result this
    function returned for the previous frame (None for the first frame).

    Returns a new PoseResult with track_ids (N,), keypoints smoothed when ``smooth``, boxes
    recomputed from them, and the state the next call needs. ``current`` is not modified.
    """
    if previous is not None and (previous.track_ids is None or previous.track_state is None):
        raise ValueError('previous must be a result returned by track_poses')
    previous_ids: np.ndarray
    if previous is None or previous.track_ids is None:
        counts = np.zeros((len(current), 0), np.int64)
        previous_ids, next_id = np.zeros(0, np.int64), 0
    else:
        counts = similar_keypoint_counts(
            current.keypoints, current.boxes, previous.keypoints, previous.boxes, variances=current.schema.oks_vars
        )
        previous_ids, next_id = previous.track_ids, previous.track_state.next_id
    matched = match_poses(counts, current.scores, threshold)
    ids, next_id = _assign_ids(matched, current.scores, previous_ids, next_id)
    keypoints, filters = current.keypoints, (None,) * len(current)
    if smooth:
        keypoints, filters = _smooth(current, previous, matched)
    return PoseResult(
        keypoints=keypoints,
        scores=current.scores,
        num_keypoints=current.num_keypoints,
        boxes=bounding_boxes(keypoints),
        image_size=current.image_size,
        track_ids=ids,
        track_state=TrackState(next_id=next_id, filters=filters),
        schema=current.schema,
    )


class PoseTracker:
    """Holds the previous frame: ``tracker(result) -> tracked result``; ``reset()`` between videos."""

    def __init__(self, threshold: int = MIN_SIMILAR_KEYPOINTS, smooth: bool = False):
        self.threshold = threshold
        self.smooth = smooth
        self.previous: PoseResult | None = None

    def __call__(self, result: PoseResult) -> PoseResult:
        self.previous = track_poses(self.previous, result, self.threshold, self.smooth)
        return self.previous

    def reset(self):
        self.previous = None
