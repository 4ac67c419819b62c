"""``lwop data preview``: a contact sheet of training samples exactly as the network gets them.

The samples are the first ``count`` of the training stream itself (:func:`lwop_jax.data.pipeline.make_train_dataset`
with the run's settings and seed: augmentation, crop, targets and loss mask as the network sees them), so
the sheet shows the first samples a ``lwop train`` run with the same config and seed trains on. Each tile
is one crop with
  * the heatmaps as a colour overlay (each keypoint its colour, at the maps' stride-8 cells),
  * the PAFs as arrows (every other cell where a limb's field is set, in its second keypoint's colour),
  * the cells the loss ignores (crowd regions) hatched in red,
  * the keypoint names at the heatmaps' peaks,
and a caption with the image the sample comes from. NumPy and OpenCV; TensorFlow only to make the samples.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import cv2
import numpy as np

from lwop_jax.schema import KeypointSchema

OVERLAY_OPACITY = 0.75  # of a heatmap's colour where its value is 1
PEAK_VALUE = 0.5  # a heatmap cell at least this high, and a local maximum, gets its keypoint's name
ARROW_NORM = 0.5  # a PAF cell with a vector at least this long gets an arrow
ARROW_LENGTH = 10.0  # pixels
IGNORED_COLOR = (40, 40, 220)  # BGR red hatching of the cells the loss ignores
CAPTION_HEIGHT, HEADER_HEIGHT, GAP = 18, 22, 4
FONT = cv2.FONT_HERSHEY_SIMPLEX
BACKGROUND = (32, 32, 32)


class Samples(NamedTuple):
    """Training samples as the pipeline yields them, the image back in uint8 BGR."""

    images: np.ndarray  # (N, S, S, 3) uint8
    heatmaps: np.ndarray  # (N, S/8, S/8, K + 1)
    pafs: np.ndarray  # (N, S/8, S/8, 2 L)
    masks: np.ndarray  # (N, S/8, S/8), 1 = in the loss
    names: list[str]  # the image file of each sample


def training_samples(labels, images_dir, *, batch_size: int, seed: int = 0, shuffle: bool = True, **settings):
    """The first ``batch_size`` samples of the training stream over ``labels`` (prepared labels) with the
    keyword settings of :func:`lwop_jax.data.pipeline.make_train_dataset` (crop_size, sigma, schema, ...)."""
    from lwop_jax.data import pipeline  # TensorFlow (the [train] extra): the samples come from tf.data itself

    dataset = pipeline.make_train_dataset(
        labels, images_dir, batch_size=batch_size, seed=seed, shuffle=shuffle, **settings
    )
    batch = next(dataset.as_numpy_iterator())
    # The pipeline normalises (pixel - 128) / 256 in float32, which holds every such value exactly.
    images = np.rint(batch['image'] * 256.0 + 128.0).astype(np.uint8)
    order = pipeline.EpochOrder(len(labels), seed, shuffle)
    names = []
    for position in range(batch_size):
        name = labels[order.locate(position)[2]]['img_paths']
        skipped = name in dataset.skipped_images
        names.append(f'{name} (unreadable: the next readable label)' if skipped else name)
    return Samples(images, batch['heatmaps'], batch['pafs'], batch['mask'], names)


def keypoint_colors(schema: KeypointSchema) -> np.ndarray:
    """(K, 3) uint8 BGR: the schema's colours when they tell every keypoint apart, else a hue wheel."""
    colors = np.array(schema.colors, np.uint8)
    if len({tuple(c) for c in colors}) == len(colors):
        return colors
    hues = (np.arange(schema.num_keypoints) * 180 // schema.num_keypoints).astype(np.uint8)
    hsv = np.stack([hues, np.full_like(hues, 255), np.full_like(hues, 255)], -1)[None]
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)[0]


def _upsampled(cells: np.ndarray, size: int) -> np.ndarray:
    """Map cells to crop pixels, each cell a stride x stride block (cell i covers pixels [8i, 8i + 8))."""
    return cv2.resize(cells, (size, size), interpolation=cv2.INTER_NEAREST)


def draw_sample(image, heatmaps, pafs, mask, schema: KeypointSchema) -> np.ndarray:
    """One tile: the crop with heatmap colours, ignored cells hatched, PAF arrows and keypoint names."""
    size, cells = image.shape[0], heatmaps.shape[0]
    stride = size / cells
    colors = keypoint_colors(schema)
    heat = heatmaps[..., : schema.num_keypoints]
    strongest = np.clip(heat.max(-1), 0.0, 1.0)
    color = colors[heat.argmax(-1)].astype(np.float32)
    alpha = OVERLAY_OPACITY * _upsampled(strongest, size)[..., None]
    tile = image.astype(np.float32) * (1 - alpha) + _upsampled(color, size) * alpha

    ignored = _upsampled((mask < 0.5).astype(np.uint8), size).astype(bool)
    rows, columns = np.indices((size, size))
    hatch = ignored & ((rows + columns) % 8 < 2)
    tile[ignored] *= 0.6
    tile[hatch] = IGNORED_COLOR
    tile = np.rint(tile).astype(np.uint8)

    for channel, (_, end) in enumerate(schema.training_limbs):
        field = pafs[..., 2 * channel : 2 * channel + 2]
        for i, j in np.argwhere(np.hypot(field[..., 0], field[..., 1]) >= ARROW_NORM):
            if (i + j) % 2:  # every other cell: arrows stay apart
                continue
            start = np.array([(j + 0.5) * stride - 0.5, (i + 0.5) * stride - 0.5])
            tip = start + field[i, j] / np.linalg.norm(field[i, j]) * ARROW_LENGTH
            cv2.arrowedLine(tile, _point(start), _point(tip), _bgr(colors[end]), 1, cv2.LINE_AA, tipLength=0.35)

    for k, name in enumerate(schema.keypoints):
        channel = np.ascontiguousarray(heat[..., k])
        peaks = (channel >= PEAK_VALUE) & (channel >= cv2.dilate(channel, np.ones((3, 3), np.uint8)))
        for i, j in np.argwhere(peaks):
            _label(tile, name, ((j + 0.5) * stride + 3, (i + 0.5) * stride - 3), _bgr(colors[k]), 0.33)
    return tile


def _point(xy) -> tuple[int, int]:
    return int(round(xy[0])), int(round(xy[1]))


def _bgr(color) -> tuple[int, int, int]:
    return int(color[0]), int(color[1]), int(color[2])


def _label(canvas, text, origin, color, scale) -> None:
    """Text with a black outline, readable on any crop (the outline is the text drawn shifted: a thicker
    stroke would also widen the letters' spacing)."""
    x, y = _point(origin)
    for dx, dy in ((-1, 0), (1, 0), (0, -1), (0, 1)):
        cv2.putText(canvas, text, (x + dx, y + dy), FONT, scale, (0, 0, 0), 1, cv2.LINE_AA)
    cv2.putText(canvas, text, (x, y), FONT, scale, color, 1, cv2.LINE_AA)


def sheet_layout(count: int, size: int, columns: int) -> tuple[int, int, int]:
    """(columns, sheet height, sheet width) of a sheet of ``count`` tiles of ``size`` pixels."""
    columns = max(1, min(columns, count))
    rows = math.ceil(count / columns)
    height = HEADER_HEIGHT + rows * (size + CAPTION_HEIGHT + GAP) + GAP
    return columns, height, columns * (size + GAP) + GAP


def tile_origin(index: int, size: int, columns: int) -> tuple[int, int]:
    """(top, left) pixel of tile ``index`` (its crop; the caption is below it)."""
    row, column = divmod(index, columns)
    return HEADER_HEIGHT + GAP + row * (size + CAPTION_HEIGHT + GAP), GAP + column * (size + GAP)


def contact_sheet(samples: Samples, schema: KeypointSchema, title: str, columns: int = 4) -> np.ndarray:
    """All samples' tiles in a grid under a title line: (H, W, 3) uint8 BGR."""
    count, size = len(samples.images), samples.images.shape[1]
    columns, height, width = sheet_layout(count, size, columns)
    sheet = np.full((height, width, 3), BACKGROUND, np.uint8)
    _label(sheet, title, (GAP, HEADER_HEIGHT - 7), (255, 255, 255), 0.45)
    for index in range(count):
        top, left = tile_origin(index, size, columns)
        sheet[top : top + size, left : left + size] = draw_sample(
            samples.images[index], samples.heatmaps[index], samples.pafs[index], samples.masks[index], schema
        )
        caption = f'{index}: {samples.names[index]}'
        while len(caption) > 4 and cv2.getTextSize(caption, FONT, 0.4, 1)[0][0] > size:
            caption = caption[:-4] + '...'
        _label(sheet, caption, (left, top + size + CAPTION_HEIGHT - 5), (230, 230, 230), 0.4)
    return sheet


def encode_png(image: np.ndarray) -> bytes:
    ok, data = cv2.imencode('.png', image)
    if not ok:
        raise ValueError('OpenCV could not encode the sheet as PNG')
    return data.tobytes()
