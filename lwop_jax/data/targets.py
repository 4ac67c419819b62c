"""Training targets of Lightweight OpenPose: keypoint heatmaps, PAFs and the loss mask (NumPy).

Bit-exact, vectorised re-implementation of the original ``CocoTrainDataset`` generators
(``_generate_keypoint_maps`` / ``_add_gaussian``, ``_generate_paf_maps`` / ``_set_paf``) and of the
stride-8 mask ``cv2.resize(mask, None, fx=1/8, fy=1/8, interpolation=cv2.INTER_AREA)``.

Conventions (reference README, quirks T1-T3):

* Keypoints are ``(P, 18, 3)`` rows ``(x, y, flag)`` in image pixels, internal order
  (:data:`lwop_jax.skeleton.KEYPOINT_NAMES`), persons in render order: main person first, then the
  others. Flags: 0 = labelled but occluded, 1 = visible, 2 = absent/outside. Only flag <= 1 renders.
* Maps are ``floor(H / stride) x floor(W / stride)``, channels last.
* Heatmap cell (r, c) is the Gaussian at image point ``(stride*c + stride/2 - 0.5, ...)`` (3.5 for
  stride 8); PAF cell (r, c) stands for image point ``(stride*c, stride*r)`` (no half-cell shift).
"""

import numpy as np

from lwop_jax.skeleton import NUM_KEYPOINTS, PAF_LIMBS

# The original's Gaussian window half-width in sigmas and its cut-off: exp(-4.6052) ~ 0.01 (ln 100).
GAUSSIAN_WINDOW_SIGMAS = 4
GAUSSIAN_EXPONENT_CUTOFF = 4.6052
# Limbs shorter than this (in map units) draw no PAF (the original's "same points" test).
MIN_LIMB_LENGTH = 1e-7


def as_keypoint_array(keypoints, num_keypoints=NUM_KEYPOINTS):
    """Any array-like of persons' keypoints -> float64 array (P, K, 3); P may be 0."""
    array = np.asarray(keypoints, dtype=np.float64)
    if array.size == 0:
        return np.zeros((0, num_keypoints, 3))
    if array.ndim == 2:  # a single person
        array = array[None]
    if array.ndim != 3 or array.shape[1:] != (num_keypoints, 3):
        raise ValueError(f'keypoints must have shape (P, {num_keypoints}, 3), got {array.shape}')
    return array


def render_targets(keypoints, height, width, stride=8, sigma=7.0, paf_thickness=1.0, limbs=PAF_LIMBS):
    """Keypoint heatmaps and PAFs of all persons of one image, as the original renders them.

    Args:
        keypoints: (P, K, 3) array-like, (x, y, flag) in image pixels, in the schema's order (coco18: the
            original's 18 points), main person first; later persons overwrite earlier ones in the PAFs.
            A single (K, 3) person is accepted too.
        height, width: image (crop) size in pixels.
        limbs: the keypoint pair drawn into PAF channels 2c, 2c+1, for each c
            (:attr:`lwop_jax.schema.KeypointSchema.training_limbs`; coco18's is the original's PAF_LIMBS).
    Returns:
        heatmaps: (H // stride, W // stride, K + 1) float32; channel K is the background 1 - max.
        pafs: (H // stride, W // stride, 2 L) float32; channels 2c, 2c+1 = (x, y) of limbs[c].
    """
    num_keypoints = max((max(limb) for limb in limbs), default=-1) + 1
    keypoints = np.asarray(keypoints, dtype=np.float64)
    keypoints = as_keypoint_array(keypoints, keypoints.shape[-2] if keypoints.size else num_keypoints)
    rendered = keypoints[..., 2] <= 1
    if not np.isfinite(keypoints[..., :2][rendered]).all():
        raise ValueError('keypoints with flag <= 1 must have finite coordinates')
    # Absent points never render; zeroing them (in a copy) keeps NaN/inf out of the index maths.
    keypoints = np.where(rendered[..., None], keypoints, np.array([0.0, 0.0, 2.0]))
    map_h, map_w = int(height) // stride, int(width) // stride
    heatmaps = render_heatmaps(keypoints, map_h, map_w, stride, sigma)
    pafs = render_pafs(keypoints, map_h, map_w, stride, paf_thickness, limbs)
    return heatmaps, pafs


# ----------------------------------------------------------------------------------- heatmaps
def _gaussian_cell_range(coord, map_size, stride, sigma):
    """First and one-past-last cell of the original's Gaussian window along one axis.

    coord: (...) float64 pixel coordinates. The window is int(coord -/+ 4 sigma) clamped to
    [0, map_size * stride] in pixels (int() truncates toward zero), then floor-divided by stride.
    """
    half = GAUSSIAN_WINDOW_SIGMAS * sigma
    map_px = map_size * stride
    # The outer clips only keep far-away points from overflowing int64; their windows stay empty.
    first_px = np.clip(np.trunc(coord - half), 0, map_px)
    last_px = np.clip(np.trunc(coord + half), 0, map_px)
    return (first_px // stride).astype(np.int64), (last_px // stride).astype(np.int64)


def _gaussian_axis_terms(coord, first, last, patch, stride):
    """Squared offsets (cell centre - coord)^2 and in-window flags along one axis of a patch.

    coord, first, last: (P, 18). Returns cells (P, 18, patch) int64, squared (P, 18, patch) float64
    and inside (P, 18, patch) bool.
    """
    shift = stride / 2 - 0.5
    cells = first[..., None] + np.arange(patch)
    offset = cells * stride + shift - coord[..., None]  # same float64 operations as the original
    return cells, offset * offset, cells < last[..., None]


def _gaussian_patches(keypoints, map_h, map_w, stride, sigma):
    """Per-keypoint Gaussian patches, as the float32 values the original adds.

    Returns rows (P, 18, S, 1) and cols (P, 18, 1, S) int64 cell indices starting in [0, map size],
    so they address a map padded by S cells, and values (P, 18, S, S) float32
    holding float32(exp(-exponent)) where the original adds and 0 elsewhere.
    """
    x, y, flag = keypoints[..., 0], keypoints[..., 1], keypoints[..., 2]
    col_first, col_last = _gaussian_cell_range(x, map_w, stride, sigma)
    row_first, row_last = _gaussian_cell_range(y, map_h, stride, sigma)
    # A window spans at most 2 * 4 sigma + 1 px (truncation), so at most this many cells per axis.
    patch = int((2 * GAUSSIAN_WINDOW_SIGMAS * sigma + 1) // stride) + 1
    cols, dx2, col_inside = _gaussian_axis_terms(x, col_first, col_last, patch, stride)
    rows, dy2, row_inside = _gaussian_axis_terms(y, row_first, row_last, patch, stride)

    d2 = dx2[..., None, :] + dy2[..., :, None]
    exponent = d2 / 2 / sigma / sigma
    rendered = (
        (flag <= 1)[..., None, None]
        & row_inside[..., :, None]
        & col_inside[..., None, :]
        & ~(exponent > GAUSSIAN_EXPONENT_CUTOFF)
    )
    # NumPy >= 2 (NEP 50): float32_cell + python_float rounds the float to float32 first (T2).
    values = np.where(rendered, np.exp(-exponent).astype(np.float32), np.float32(0))
    return rows[..., :, None], cols[..., None, :], values


def render_heatmaps(keypoints, map_h, map_w, stride=8, sigma=7.0):
    """(P, K, 3) float64 keypoints -> (map_h, map_w, K + 1) float32 heatmaps incl. background.

    Persons are added one after another with a clamp at 1 after each add, in float32, exactly as
    the original's per-cell loop: the result is bit-identical, including where Gaussians overlap.
    """
    rows, cols, values = _gaussian_patches(keypoints, map_h, map_w, stride, sigma)
    patch = values.shape[-1]
    # Padding by a patch lets every window be written whole; cells outside the window add 0.
    padded_h, padded_w = map_h + patch, map_w + patch
    num_keypoints = keypoints.shape[1]
    channel = np.arange(num_keypoints)[:, None, None]
    flat_cells = (channel * padded_h + rows) * padded_w + cols  # (P, K, S, S) into a flat map
    padded = np.zeros(num_keypoints * padded_h * padded_w, dtype=np.float32)
    for person_cells, person_values in zip(flat_cells, values):
        # Each keypoint of one person has its own channel, so no cell appears twice in one write.
        padded[person_cells] = np.minimum(padded[person_cells] + person_values, np.float32(1))
    padded = padded.reshape(num_keypoints, padded_h, padded_w)
    heatmaps = np.empty((map_h, map_w, num_keypoints + 1), dtype=np.float32)
    heatmaps[..., :num_keypoints] = padded[:, :map_h, :map_w].transpose(1, 2, 0)
    heatmaps[..., num_keypoints] = 1 - heatmaps[..., :num_keypoints].max(axis=-1, initial=0)
    return heatmaps


# ----------------------------------------------------------------------------------------- PAFs
def _limb_geometry(keypoints, map_h, map_w, stride, thickness, limbs):
    """Endpoints in map units, unit vectors, windows and drawability of every (person, limb).

    Returns a dict of (P, L) arrays: xa, ya, ux, uy (float64), x_min, x_max, y_min, y_max (int64,
    half-open cell windows) and drawn (bool).
    """
    a, b = keypoints[:, [a for a, _ in limbs]], keypoints[:, [b for _, b in limbs]]
    xa, ya, xb, yb = a[..., 0] / stride, a[..., 1] / stride, b[..., 0] / stride, b[..., 1] / stride
    x_ba, y_ba = xb - xa, yb - ya
    norm = np.sqrt(x_ba * x_ba + y_ba * y_ba)
    drawn = (a[..., 2] <= 1) & (b[..., 2] <= 1) & ~(norm < MIN_LIMB_LENGTH)
    safe_norm = np.where(drawn, norm, 1.0)

    # int() truncates toward zero; with the exclusive upper bound this makes the band asymmetric
    # (T3). The original clamps the start at 0 and the end at the map size; clamping the other
    # sides too only keeps far-away points from overflowing int64 (those windows are empty anyway).
    def window(low, high, size):
        return (
            np.trunc(np.clip(low - thickness, 0, size)).astype(np.int64),
            np.trunc(np.clip(high + thickness, 0, size)).astype(np.int64),
        )

    x_min, x_max = window(np.minimum(xa, xb), np.maximum(xa, xb), map_w)
    y_min, y_max = window(np.minimum(ya, yb), np.maximum(ya, yb), map_h)
    return dict(
        xa=xa,
        ya=ya,
        ux=x_ba / safe_norm,
        uy=y_ba / safe_norm,
        drawn=drawn,
        x_min=x_min,
        x_max=x_max,
        y_min=y_min,
        y_max=y_max,
    )


def _limb_window_cells(first, last):
    """Cells first + (0 .. S-1) of every limb window, with S the largest window, and their flags.

    first, last: (N,) int64 half-open windows. Returns cells (N, S) int64 and inside (N, S) bool.
    """
    patch = max(int((last - first).max(initial=0)), 1)
    cells = first[:, None] + np.arange(patch)
    return cells, cells < last[:, None]


def render_pafs(keypoints, map_h, map_w, stride=8, thickness=1.0, limbs=PAF_LIMBS):
    """(P, K, 3) float64 keypoints -> (map_h, map_w, 2 L) float32 part affinity fields of the L limbs.

    A cell inside a limb's window whose distance to the limb's infinite line is <= thickness is set
    to the limb's unit vector; later persons overwrite earlier ones (no averaging).
    """
    pafs = np.zeros((map_h, map_w, 2 * len(limbs)), dtype=np.float32)
    g = _limb_geometry(keypoints, map_h, map_w, stride, thickness, limbs)
    drawn = g['drawn'] & (g['x_max'] > g['x_min']) & (g['y_max'] > g['y_min'])
    person, limb = np.nonzero(drawn)  # row-major: persons in render order
    if len(person) == 0:
        return pafs
    g = {key: value[person, limb] for key, value in g.items()}  # (N,) per drawn limb

    # Only each limb's own window is evaluated: patches (N, rows, cols) instead of whole maps.
    cols, col_inside = _limb_window_cells(g['x_min'], g['x_max'])
    rows, row_inside = _limb_window_cells(g['y_min'], g['y_max'])
    x_ca = cols - g['xa'][:, None]
    y_ca = rows - g['ya'][:, None]
    distance = np.abs(x_ca[:, None, :] * g['uy'][:, None, None] - y_ca[:, :, None] * g['ux'][:, None, None])
    on_limb = row_inside[:, :, None] & col_inside[:, None, :] & (distance <= thickness)
    which, i, j = np.nonzero(on_limb)

    # Overwrite semantics: a cell of limb k takes the vector of the last (person, limb k) drawing
    # there. Hits are in render order, so the last occurrence of each cell wins.
    cell = (limb[which] * map_h + rows[which, i]) * map_w + cols[which, j]
    _, last_from_end = np.unique(cell[::-1], return_index=True)  # stable: first of the reversed
    winner = which[len(which) - 1 - last_from_end]
    limb_index, row, col = np.unravel_index(cell[len(which) - 1 - last_from_end], (len(limbs), map_h, map_w))
    pafs[row, col, 2 * limb_index] = g['ux'][winner].astype(np.float32)
    pafs[row, col, 2 * limb_index + 1] = g['uy'][winner].astype(np.float32)
    return pafs


# ----------------------------------------------------------------------------------------- mask
def mask_size(height, width, stride=8):
    """(rows, cols) of the stride-``stride`` mask (T1).

    OpenCV computes ``round(size * (1 / stride))`` with round half to even (cvRound), so this can
    exceed the maps' floor(size / stride) by one.
    """
    scale = 1 / stride
    return int(round(height * scale)), int(round(width * scale))


def downsample_mask(mask_full, stride=8):
    """Stride-``stride`` mask, bit-identical to ``cv2.resize(mask_full, None, fx=1/stride,
    fy=1/stride, interpolation=cv2.INTER_AREA)``.

    With an integer scale OpenCV takes its "area fast" path: a cell is the mean of its
    stride x stride block. Whole blocks are summed in row-major order, four values at a time
    (``sum += a + b + c + d``), times 1/stride^2; blocks cut by the far image border sum their
    valid pixels one by one and divide by their count. Both orders are reproduced here.

    Two input types, as in the original pipeline: float32 (``get_mask``, full images; any other
    float is cast to float32) and uint8 (the original ``CropPad`` stores its crop's mask as uint8,
    truncating interpolated values; OpenCV then sums in int and rounds the mean half to even).
    Verified equal to OpenCV 5.0 for strides 3, 4, 8 and 16. Stride 2 is not exact: OpenCV has a
    dedicated SIMD 2x2 kernel with its own summation/rounding (float: up to 1 ulp apart).

    Args:
        mask_full: (H, W) float or uint8 array, 1 = use, 0 = ignore.
    Returns:
        (round(H / stride), round(W / stride)) array of the input's type (float32 or uint8). This
        can be one row/column larger than the floor-sized maps (T1); see
        :func:`crop_mask_to_maps`.
    """
    mask_full = np.asarray(mask_full)
    is_uint8 = mask_full.dtype == np.uint8
    # Integer sums of uint8 blocks are exact in float64; floats are summed in float32 as OpenCV.
    mask_full = mask_full.astype(np.float64 if is_uint8 else np.float32)
    height, width = mask_full.shape
    out_h, out_w = mask_size(height, width, stride)
    blocks = _mask_blocks(mask_full, out_h, out_w, stride)  # (out_h, out_w, stride * stride)
    counts = _valid_pixels_per_block(height, width, out_h, out_w, stride)

    area = stride * stride
    whole = _sum_in_fours(blocks).astype(np.float32) * np.float32(1 / area)
    # Blocks cut by the border: sequential row-major sum of their pixels (padding adds exact 0).
    partial = np.zeros((out_h, out_w), dtype=blocks.dtype)
    for k in range(area):
        partial += blocks[..., k]
    partial = partial.astype(np.float32) / np.maximum(counts, 1).astype(np.float32)
    mean = np.where(counts == area, whole, partial)
    if is_uint8:  # saturate_cast<uchar>(float): round half to even, clamp to [0, 255]
        return np.clip(np.rint(mean), 0, 255).astype(np.uint8)
    return mean.astype(np.float32)


def _mask_blocks(mask_full, out_h, out_w, stride):
    """(H, W) -> (out_h, out_w, stride * stride) row-major blocks, zero-padded past the border."""
    height, width = mask_full.shape
    padded = np.zeros((out_h * stride, out_w * stride), dtype=mask_full.dtype)
    rows, cols = min(height, out_h * stride), min(width, out_w * stride)
    padded[:rows, :cols] = mask_full[:rows, :cols]
    blocks = padded.reshape(out_h, stride, out_w, stride).transpose(0, 2, 1, 3)
    return blocks.reshape(out_h, out_w, stride * stride)


def _valid_pixels_per_block(height, width, out_h, out_w, stride):
    """(out_h, out_w) int: image pixels inside each block (stride^2 except at the far borders)."""
    block_rows = np.clip(height - np.arange(out_h) * stride, 0, stride)
    block_cols = np.clip(width - np.arange(out_w) * stride, 0, stride)
    return block_rows[:, None] * block_cols[None, :]


def _sum_in_fours(blocks):
    """OpenCV's inner loop: ``for k in 0, 4, 8, ...: sum += S[k] + S[k+1] + S[k+2] + S[k+3]``."""
    total = np.zeros(blocks.shape[:-1], dtype=blocks.dtype)
    area = blocks.shape[-1]
    k = 0
    for k in range(0, area - 3, 4):
        total += ((blocks[..., k] + blocks[..., k + 1]) + blocks[..., k + 2]) + blocks[..., k + 3]
    for k in range(area - area % 4, area):
        total += blocks[..., k]
    return total


def crop_mask_to_maps(mask, map_shape):
    """Crop a stride-8 mask to the maps' (rows, cols), dropping the extra row/column of T1.

    Decision: where round(H/8) > floor(H/8) the original ``__getitem__`` raises a broadcast error
    (it never happens in training, whose crops are 368 x 368 = 46 x 46 cells). We drop the extra
    row/column instead: it covers image pixels at or beyond 8 * floor(H/8), which no map cell
    represents, so nothing the loss sees changes. A mask smaller than the maps is an error.
    """
    rows, cols = int(map_shape[0]), int(map_shape[1])
    if mask.shape[0] < rows or mask.shape[1] < cols:
        raise ValueError(f'mask {mask.shape[:2]} is smaller than the maps ({rows}, {cols})')
    return mask[:rows, :cols]
