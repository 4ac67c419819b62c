"""Heatmap peaks: the original `extract_keypoints` over all 18 keypoint channels at once, bit-identical.

Peaks are strict 4-neighbour maxima above a threshold, thinned by a greedy non-maximum suppression
within 6 px (as vectorised rounds), and numbered with a running id across channels, as the original
numbers them. Part of the CPU inference path: NumPy only. See :mod:`lwop_jax.inference.decode`.
"""

import numpy as np

from lwop_jax.skeleton import NUM_KEYPOINTS

PEAK_THRESHOLD = 0.1  # heatmap values below this are treated as 0
PEAK_NMS_SQUARED_RADIUS = 36  # peaks closer than 6 px (Euclidean) to a kept peak are dropped


def check_heatmaps(heatmaps):
    heatmaps = np.asarray(heatmaps)
    if heatmaps.ndim != 3 or heatmaps.shape[2] < NUM_KEYPOINTS:
        raise ValueError(
            f'heatmaps must have shape (H, W, C) with C >= {NUM_KEYPOINTS} (19 with background), got {heatmaps.shape}'
        )
    return np.asarray(heatmaps, dtype=np.float32)


def _candidate_peaks(heatmaps):
    """Flat (H*W*C) indices of pixels that are strict 4-neighbour maxima above the threshold.

    The original zeroes values < 0.1 and then compares with zero-padded neighbours. For a pixel
    v >= 0.1 that is the same as comparing with the raw neighbours (a neighbour below 0.1 is
    below v either way) and treating outside pixels as smaller; pixels below 0.1 (0 after
    zeroing) can never be strictly above a zero border. NaN never peaks in either form.
    """
    h, w, c = heatmaps.shape
    above = heatmaps >= PEAK_THRESHOLD  # float32 compare, like the original's `< 0.1`
    above[:, :, NUM_KEYPOINTS:] = False  # background channel is not decoded
    flat_idx = np.flatnonzero(above)
    flat = heatmaps.reshape(-1)
    values = flat[flat_idx]
    pixel = flat_idx // c
    y, x = np.divmod(pixel, w)
    row_step, col_step = w * c, c
    is_peak = np.ones(len(flat_idx), dtype=bool)
    # Out-of-map neighbours are clipped to some in-range pixel and then ignored via the mask.
    for has_neighbour, offset in ((x > 0, -col_step), (x < w - 1, col_step), (y > 0, -row_step), (y < h - 1, row_step)):
        neighbour = np.take(flat, flat_idx + offset, mode='clip')
        is_peak &= (values > neighbour) | ~has_neighbour
    return flat_idx[is_peak]


def _conflict_pairs(channel, x, y):
    """Pairs (i, j), i < j in (channel, x, y) order, of same-channel peaks closer than 6 px.

    Peaks are sorted by (channel, x, y), so the peaks that can conflict with peak i and come
    after it form the contiguous run of same-channel peaks with x <= x_i + 5.
    """
    n = len(x)
    if n == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    span = np.int64(x.max()) + 8  # any value > max x + 5 separates channels in the key
    key = channel.astype(np.int64) * span + x
    run_end = np.searchsorted(key, key + 6, side='left')
    run_len = run_end - np.arange(1, n + 1)
    first = np.repeat(np.arange(n), run_len)
    run_start = np.cumsum(run_len) - run_len
    second = np.arange(len(first)) - np.repeat(run_start, run_len) + first + 1
    dx = x[second] - x[first]
    dy = y[second] - y[first]
    close = dx * dx + dy * dy < PEAK_NMS_SQUARED_RADIUS
    return first[close], second[close]


def _greedy_keep(num_peaks, earlier, later):
    """Original NMS: walk peaks in order; a peak not yet suppressed is kept and suppresses the
    later peaks it conflicts with. Solved in rounds: a peak is decided once all its earlier
    conflicting peaks are decided (kept if none of them is kept). Each round decides at least
    the first undecided peak; in practice a few rounds suffice.

    earlier, later: (E,) int conflict pairs with earlier < later.  Returns (num_peaks,) bool.
    """
    undecided, kept, suppressed = 0, 1, 2
    state = np.zeros(num_peaks, np.int8)
    while True:
        from_state = state[earlier]
        has_kept = np.zeros(num_peaks, bool)
        has_kept[later[from_state == kept]] = True
        has_open = np.zeros(num_peaks, bool)
        has_open[later[from_state == undecided]] = True
        open_now = state == undecided
        state[open_now & has_kept] = suppressed
        state[open_now & ~has_kept & ~has_open] = kept
        if not (state == undecided).any():
            return state == kept
        # Pairs whose later peak is decided can no longer change anything.
        still_open = state[later] == undecided
        earlier, later = earlier[still_open], later[still_open]


def extract_peaks(heatmaps):
    """Peaks of the 18 keypoint channels, as the original's extract_keypoints loop gives them.

    heatmaps: (H, W, C) float32, C >= 18 (channel 18, the background, is ignored).
    Returns:
      all_keypoints: (K, 4) float64 rows [x, y, score, id]; grouped by keypoint type 0..17,
                     within a type in (x, y) order; id = row index (running across types).
      counts:        (18,) int64 peaks per type.
    The input is not modified.
    """
    heatmaps = check_heatmaps(heatmaps)
    h, w, c = heatmaps.shape
    flat_idx = _candidate_peaks(heatmaps)
    pixel, channel = np.divmod(flat_idx, c)
    y, x = np.divmod(pixel, w)
    # Original order: row-major nonzero, then a stable sort by x, i.e. (x, y), per channel.
    order = np.lexsort((y, x, channel))
    flat_idx, channel, x, y = flat_idx[order], channel[order], x[order], y[order]
    keep = _greedy_keep(len(x), *_conflict_pairs(channel, x, y))
    flat_idx, channel, x, y = flat_idx[keep], channel[keep], x[keep], y[keep]
    all_keypoints = np.empty((len(x), 4), np.float64)
    all_keypoints[:, 0] = x
    all_keypoints[:, 1] = y
    all_keypoints[:, 2] = heatmaps.reshape(-1)[flat_idx]
    all_keypoints[:, 3] = np.arange(len(x))
    counts = np.bincount(channel, minlength=NUM_KEYPOINTS)[:NUM_KEYPOINTS].astype(np.int64)
    return all_keypoints, counts
