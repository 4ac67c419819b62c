"""Image pre-processing and map post-processing of the original, bit for bit (NumPy + OpenCV).

Two pipelines exist in the original and they differ on purpose-irrelevant but bit-visible
details, so both are reproduced:

* demo.py `infer_fast` (interactive demo): resize the **uint8** BGR image with INTER_LINEAR,
  then normalise; maps are upsampled x4 with INTER_CUBIC and the pad is *not* removed; keypoints
  are mapped back with `(x * stride / upsample_ratio - pad_left) / scale`.
* val.py `infer` (evaluation): normalise first (the tuple mean promotes to **float64**), resize
  with INTER_CUBIC in float64, cast to float32 for the network; maps are upsampled x8, the pad
  is cropped and the result is resized to the original image size.

The network input is returned NHWC (1, Hp, Wp, 3) float32, BGR, as this project's model
expects; the original's NCHW tensor is its transpose. CPU inference path: NumPy, cv2, stdlib.
"""

import math
from dataclasses import dataclass

import cv2
import numpy as np

STRIDE = 8
DEMO_HEIGHT = 256
DEMO_UPSAMPLE_RATIO = 4
VAL_BASE_HEIGHT = 368
IMG_MEAN = (128, 128, 128)
IMG_SCALE = 1 / 256
PAD_VALUE = (0, 0, 0)


@dataclass(frozen=True)
class InputGeometry:
    """Where the network input sits relative to the image.

    scale:     resize factor applied to the image (net height / image height, x the val scale).
    pad:       (top, left, bottom, right) zero padding added after resizing, in input pixels.
    image_hw:  (H, W) of the original image.
    scaled_hw: (Hs, Ws) after resizing, before padding.
    padded_hw: (Hp, Wp) of the network input.
    """

    scale: float
    pad: tuple
    image_hw: tuple
    scaled_hw: tuple
    padded_hw: tuple


def _check_image(image):
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f'image must be (H, W, 3) BGR, got shape {image.shape}')
    return image


def _check_maps(maps):
    maps = np.asarray(maps)
    if maps.ndim != 3:
        raise ValueError(f'maps must be (h, w, C) channels-last, got shape {maps.shape}')
    return maps


def pad_to_stride(image, stride, min_dims, pad_value=PAD_VALUE):
    """val.py `pad_width`: pad to at least min_dims, rounded up to a multiple of stride.

    image: (h, w, 3). min_dims: (min_height, min_width). The height only grows when h is below
    min_height (a taller image is left as is, even when h is not a multiple of stride, as in
    the original); the pad is split with floor(pad / 2) before, the rest after.
    Returns (padded (Hp, Wp, 3), pad (top, left, bottom, right)).
    """
    h, w = image.shape[:2]
    h = min(min_dims[0], h)  # the original's quirk: a tall image gets no vertical pad
    target_h = math.ceil(min_dims[0] / float(stride)) * stride
    target_w = math.ceil(max(min_dims[1], w) / float(stride)) * stride
    top = int(math.floor((target_h - h) / 2.0))
    left = int(math.floor((target_w - w) / 2.0))
    pad = (top, left, int(target_h - h - top), int(target_w - w - left))
    padded = cv2.copyMakeBorder(image, pad[0], pad[2], pad[1], pad[3], cv2.BORDER_CONSTANT, value=pad_value)
    return padded, pad


def _geometry(image, scaled, padded, scale, pad):
    return InputGeometry(
        scale=scale,
        pad=tuple(int(p) for p in pad),
        image_hw=tuple(image.shape[:2]),
        scaled_hw=tuple(scaled.shape[:2]),
        padded_hw=tuple(padded.shape[:2]),
    )


def preprocess_demo(image, net_height=DEMO_HEIGHT, stride=STRIDE):
    """demo.py `infer_fast` input.

    image: (H, W, 3) uint8 BGR. Resized by scale = net_height / H (INTER_LINEAR on uint8, so
    OpenCV's fixed-point weights), normalised (v - 128) / 256 in float32 (exact: the uint8 values
    need no rounding), padded with 0 to a width multiple of stride.
    Returns (batch (1, Hp, Wp, 3) float32 NHWC BGR, InputGeometry).
    """
    image = _check_image(image)
    scale = net_height / image.shape[0]
    scaled = cv2.resize(image, (0, 0), fx=scale, fy=scale, interpolation=cv2.INTER_LINEAR)
    normalised = (scaled.astype(np.float32) - np.float32(128)) * np.float32(IMG_SCALE)
    min_dims = [net_height, max(scaled.shape[1], net_height)]
    padded, pad = pad_to_stride(normalised, stride, min_dims)
    return padded[None], _geometry(image, scaled, padded, scale, pad)


def preprocess_val(image, base_height=VAL_BASE_HEIGHT, scale=1.0, stride=STRIDE):
    """val.py `infer` input for one scale.

    image: (H, W, 3) uint8 BGR. Normalised first with the tuple mean, which promotes to float64;
    resized by ratio = scale * base_height / H with INTER_CUBIC in float64 (fx/fy given, as the
    original, since OpenCV's sampling grid depends on them); padded to min_dims
    [base_height, max(Ws, base_height)]; cast to float32 last, as `torch.from_numpy(..).float()`.
    Returns (batch (1, Hp, Wp, 3) float32 NHWC BGR, InputGeometry with scale = ratio).
    """
    image = _check_image(image)
    normalised = (np.array(image, dtype=np.float32) - IMG_MEAN) * IMG_SCALE  # float64
    ratio = scale * base_height / float(image.shape[0])
    scaled = cv2.resize(normalised, (0, 0), fx=ratio, fy=ratio, interpolation=cv2.INTER_CUBIC)
    min_dims = [base_height, max(scaled.shape[1], base_height)]
    padded, pad = pad_to_stride(scaled, stride, min_dims)
    return padded.astype(np.float32)[None], _geometry(image, scaled, padded, ratio, pad)


def upsample_demo_maps(maps, upsample_ratio=DEMO_UPSAMPLE_RATIO):
    """demo.py: last-stage maps (h, w, C) -> (h * r, w * r, C) float32, INTER_CUBIC; the pad is
    kept, so coordinates are in padded-input pixels x r / stride."""
    maps = _check_maps(maps)
    return cv2.resize(maps, (0, 0), fx=upsample_ratio, fy=upsample_ratio, interpolation=cv2.INTER_CUBIC)


def upsample_val_maps(maps, geometry, stride=STRIDE):
    """val.py: last-stage maps (h, w, C) -> (H, W, C) float32 on the original image grid:
    x stride INTER_CUBIC, crop the pad, then INTER_CUBIC to the image size (W, H)."""
    maps = _check_maps(maps)
    top, left, bottom, right = geometry.pad
    upsampled = cv2.resize(maps, (0, 0), fx=stride, fy=stride, interpolation=cv2.INTER_CUBIC)
    cropped = upsampled[top : upsampled.shape[0] - bottom, left : upsampled.shape[1] - right, :]
    height, width = geometry.image_hw
    return cv2.resize(cropped, (width, height), interpolation=cv2.INTER_CUBIC)


def demo_keypoints_to_image(xy, geometry, stride=STRIDE, upsample_ratio=DEMO_UPSAMPLE_RATIO):
    """demo.py `run_demo` mapping from upsampled-map pixels to image pixels.

    xy: (..., 2) map-pixel coordinates (x, y). Returns (..., 2) float64
    ((x * stride / upsample_ratio - pad_left) / scale, same for y with pad_top). The demo then
    truncates with int() for drawing; that is left to the caller. Missing keypoints are not
    special-cased here (mask them before or after).
    """
    xy = np.asarray(xy, dtype=np.float64)
    top, left = geometry.pad[0], geometry.pad[1]
    out = np.empty_like(xy)
    out[..., 0] = (xy[..., 0] * stride / upsample_ratio - left) / geometry.scale
    out[..., 1] = (xy[..., 1] * stride / upsample_ratio - top) / geometry.scale
    return out
