"""Heatmap peaks: the original `extract_keypoints` over all 18 keypoint channels at once, bit-identical.

Peaks are strict 4-neighbour maxima above a threshold, thinned by a greedy non-maximum suppression
within 6 px (as vectorised rounds), and numbered with a running id across channels, as the original
numbers them. The maps are read once, as band maxima; only the few cells that reach the threshold are
read again for the exact test, so sparse maps cost about one pass over memory. Part of the CPU
inference path: NumPy only. See :mod:`lwop_jax.inference.decode`.
"""

import numpy as np

from lwop_jax.skeleton import NUM_KEYPOINTS

PEAK_THRESHOLD = 0.1  # heatmap values below this are treated as 0
PEAK_NMS_SQUARED_RADIUS = 36  # peaks closer than 6 px (Euclidean) to a kept peak are dropped
BAND_ROWS = 16  # rows per band of the first, coarse pass (see _active_cells)
# v >= 0.1 in float32 (the original's threshold test) is v > the float32 just below 0.1.
_BELOW_THRESHOLD = np.nextafter(np.float32(PEAK_THRESHOLD), np.float32(0))


def check_heatmaps(heatmaps, num_keypoints=NUM_KEYPOINTS):
    heatmaps = np.asarray(heatmaps)
    if heatmaps.ndim != 3 or heatmaps.shape[2] < num_keypoints:
        raise ValueError(
            f'heatmaps must have shape (H, W, C) with C >= {num_keypoints} ({num_keypoints + 1} with background), '
            f'got {heatmaps.shape}'
        )
    return np.asarray(heatmaps, dtype=np.float32)


def _active_cells(heatmaps, num_keypoints):
    """Where peaks can be: the cells (band, x, channel), a band being BAND_ROWS rows, of the 18 keypoint
    channels whose maximum (NaN ignored) reaches the threshold. Returns three (N,) int64 arrays.

    One pass over the maps that writes only 1/BAND_ROWS of their size: reducing over rows runs along
    whole contiguous rows of (W * C) values, and the background channel, above the threshold almost
    everywhere, is dropped only afterwards, on the small result.
    """
    h, w, c = heatmaps.shape
    rows = heatmaps.reshape(h, w * c)
    full = h // BAND_ROWS * BAND_ROWS
    active = np.empty((-(-h // BAND_ROWS), w * c), bool)
    np.greater_equal(
        np.fmax.reduce(rows[:full].reshape(-1, BAND_ROWS, w * c), axis=1),
        PEAK_THRESHOLD,
        out=active[: full // BAND_ROWS],
    )
    if full < h:
        np.greater_equal(np.fmax.reduce(rows[full:], axis=0), PEAK_THRESHOLD, out=active[-1])
    active = active.reshape(-1, w, c)
    active[:, :, num_keypoints:] = False  # (contiguous: np.nonzero is several times faster than on a slice)
    cell, channel = np.divmod(np.flatnonzero(active), c)
    band, x = np.divmod(cell, w)
    return band, x, channel


def _candidate_peaks(heatmaps, num_keypoints):
    """(y, x, channel), (N,) int64 each, of the pixels that are strict 4-neighbour maxima above the
    threshold, in no particular order.

    The original zeroes values < 0.1 and then compares with zero-padded neighbours. For a pixel
    v >= 0.1 that is the same as comparing with the raw neighbours (a neighbour below 0.1 is
    below v either way) and treating outside pixels as smaller (-inf here); pixels below 0.1 (0 after
    zeroing) can never be strictly above a zero border. NaN never peaks in either form, and a
    NaN neighbour blocks a peak in both.
    """
    h, w, c = heatmaps.shape
    flat = heatmaps.reshape(-1)
    band, x, channel = _active_cells(heatmaps, num_keypoints)
    # Each active cell's column with one row above and below, (BAND_ROWS + 2, N) (cells along the long
    # axis: neighbouring cells share cache lines). Rows outside the map read as -inf: row -1 of band 0
    # and rows >= h of the last bands; cells come in band order.
    rows = np.arange(-1, BAND_ROWS + 1)[:, None]
    values = np.take(flat, rows * (w * c) + (band * BAND_ROWS * w + x) * c + channel, mode='clip')
    values[0, : np.searchsorted(band, 1)] = -np.inf
    last = np.searchsorted(band, -(-(h - BAND_ROWS) // BAND_ROWS))  # first band whose column reaches row h
    values[:, last:] = np.where(rows + band[last:] * BAND_ROWS < h, values[:, last:], -np.inf)
    # centre >= threshold, > up and > down, as one comparison; a NaN anywhere makes it False.
    floor = np.maximum(np.maximum(values[:-2], values[2:]), _BELOW_THRESHOLD)
    row, cell = np.divmod(np.flatnonzero(values[1:-1] > floor), len(band))
    y, x, channel = band[cell] * BAND_ROWS + row, x[cell], channel[cell]
    index = (y * w + x) * c + channel
    # Horizontal neighbours of the few vertical maxima; outside ones are clipped and then ignored.
    left = (np.take(flat, index - c, mode='clip') < flat[index]) | (x == 0)
    right = (np.take(flat, index + c, mode='clip') < flat[index]) | (x == w - 1)
    keep = np.flatnonzero(left & right)
    return y[keep], x[keep], channel[keep]


def _conflict_pairs(channel, x, y):
    """Pairs (i, j), i < j in (channel, x, y) order, of same-channel peaks closer than 6 px.

    Peaks are sorted by (channel, x, y), which is the order of key = (channel, x) * stride + y. The
    peaks after peak i in column x_i + dx (dx = 0..5) and within 5 rows form one run of keys, found
    by binary search: only pairs inside a 6 x 11 box are formed, so the work grows with the number of
    peaks, not with the number of peaks per column.
    """
    n = len(x)
    span = np.int64(x.max(initial=0)) + 8  # > max x + 5: a column window never reaches the next channel
    stride = np.int64(y.max(initial=0)) + 12  # > max y + 10: a row window never reaches the next column
    column = channel.astype(np.int64) * span + x
    if (np.searchsorted(column, column + 6) == np.arange(1, n + 1)).all():  # sparse maps: nothing near
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    key = column * stride + y
    dx = np.arange(6)[:, None] * stride
    low = np.searchsorted(key, (key + dx + np.where(dx == 0, 1, -5)).reshape(-1))
    count = np.searchsorted(key, (key + dx + 5).reshape(-1), side='right') - low
    first = np.repeat(np.tile(np.arange(n), 6), count)
    second = np.arange(len(first)) - np.repeat(np.cumsum(count) - count, count) + np.repeat(low, count)
    close = (x[second] - x[first]) ** 2 + (y[second] - y[first]) ** 2 < PEAK_NMS_SQUARED_RADIUS
    return first[close], second[close]


def _greedy_keep(num_peaks, earlier, later):
    """Original NMS: walk peaks in order; a peak not yet suppressed is kept and suppresses the
    later peaks it conflicts with. Solved in rounds: a peak is decided once all its earlier
    conflicting peaks are decided (kept if none of them is kept). Each round decides at least
    the first undecided peak; in practice a few rounds suffice.

    earlier, later: (E,) int conflict pairs with earlier < later.  Returns (num_peaks,) bool.
    """
    if len(earlier) == 0:  # no conflicts (sparse maps): every peak stays
        return np.ones(num_peaks, bool)
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


def extract_peaks(heatmaps, num_keypoints=NUM_KEYPOINTS):
    """Peaks of the K keypoint channels (coco18: 18), as the original's extract_keypoints loop gives them.

    heatmaps: (H, W, C) float32, C >= K (channel K, the background, is ignored).
    Returns:
      all_keypoints: (N, 4) float64 rows [x, y, score, id]; grouped by keypoint type 0..K-1,
                     within a type in (x, y) order; id = row index (running across types).
      counts:        (K,) int64 peaks per type.
    The input is not modified.
    """
    heatmaps = np.ascontiguousarray(check_heatmaps(heatmaps, num_keypoints))
    y, x, channel = _candidate_peaks(heatmaps, num_keypoints)
    # Original order: row-major nonzero, then a stable sort by x, i.e. (x, y), per channel.
    order = np.lexsort((y, x, channel))
    channel, x, y = channel[order], x[order], y[order]
    keep = _greedy_keep(len(x), *_conflict_pairs(channel, x, y))
    channel, x, y = channel[keep], x[keep], y[keep]
    all_keypoints = np.empty((len(x), 4), np.float64)
    all_keypoints[:, 0] = x
    all_keypoints[:, 1] = y
    all_keypoints[:, 2] = heatmaps[y, x, channel]
    all_keypoints[:, 3] = np.arange(len(x))
    counts = np.bincount(channel, minlength=num_keypoints)[:num_keypoints].astype(np.int64)
    return all_keypoints, counts
