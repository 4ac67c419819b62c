"""Images and videos in and out: reading any image file as BGR, expanding folders and globs, opening
videos and cameras, writing drawn images and annotated videos atomically, an optional window.

The CPU inference path: NumPy, OpenCV, tqdm and the standard library only. Problems with an input are
:class:`~lwop_jax.errors.InputFileError` with one line naming the file.
"""

from __future__ import annotations

import glob
import os
import pathlib
import sys

import cv2
import numpy as np
from tqdm import tqdm

from lwop_jax.errors import InputFileError, LwopError

IMAGE_SUFFIXES = {
    '.jpg',
    '.jpeg',
    '.png',
    '.bmp',
    '.tif',
    '.tiff',
    '.webp',
    '.jp2',
    '.pbm',
    '.pgm',
    '.ppm',
    '.pnm',
    '.sr',
    '.ras',
}
WINDOW_TITLE = 'Lightweight Human Pose Estimation'
ESC = 27


def _to_uint8(image: np.ndarray) -> np.ndarray:
    if image.dtype == np.uint8:
        return image
    if image.dtype == np.uint16:  # 65535 / 257 = 255: full range to full range
        return ((image.astype(np.uint32) + 128) // 257).astype(np.uint8)
    if np.issubdtype(image.dtype, np.floating):  # 0..1 or 0..255? guessing would be silent harm
        raise InputFileError(
            f'float images ({image.dtype}) are refused: the value range is ambiguous; '
            'pass uint8 BGR 0..255 (e.g. (image * 255).round().astype(np.uint8))'
        )
    raise InputFileError(f'unsupported image dtype {image.dtype}: pass uint8 or uint16')


def _to_three_channels(image: np.ndarray) -> np.ndarray:
    channels = 1 if image.ndim == 2 else image.shape[2]
    if channels == 1:
        return cv2.cvtColor(image.reshape(image.shape[:2]), cv2.COLOR_GRAY2BGR)
    if channels == 3:
        return image
    if channels == 4:  # alpha dropped, as cv2.imread(IMREAD_COLOR) does
        return cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    raise InputFileError(f'image has {channels} channels: expected 1 (gray), 3 (BGR) or 4 (BGRA)')


def as_bgr8(image) -> np.ndarray:
    """Any common image array -> (H, W, 3) uint8 BGR.

    Accepts (H, W) and (H, W, 1) grayscale, (H, W, 3) BGR, (H, W, 4) BGRA (alpha dropped);
    uint8 as is, uint16 divided by 257 (rounded). Float images are refused (InputFileError), since
    0..1 and 0..255 cannot be told apart. Colour arrays are taken as BGR (OpenCV order).
    """
    if image is None:
        raise InputFileError('no image (None): was the file read?')
    image = np.asarray(image)
    if image.ndim not in (2, 3):
        raise InputFileError(f'image must be (H, W), (H, W, 1), (H, W, 3) or (H, W, 4), got {image.shape}')
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise InputFileError(f'image is empty (shape {image.shape})')
    return np.ascontiguousarray(_to_three_channels(_to_uint8(image)))


def read_image(path) -> np.ndarray:
    """Reads an image file as (H, W, 3) uint8 BGR, as the original demo (cv2 IMREAD_COLOR: gray
    and 16-bit files become 8-bit BGR, alpha is dropped, EXIF orientation is applied).

    Decodes from bytes so that OpenCV prints no warnings of its own; raises InputFileError with one
    line naming the file for a missing, empty or undecodable file.
    """
    path = pathlib.Path(path)
    if not path.exists():
        raise InputFileError(f'{path}: file not found')
    if path.is_dir():
        raise InputFileError(f'{path}: is a folder, not an image')
    if path.stat().st_size == 0:
        raise InputFileError(f'{path}: file is empty')
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except OSError as exc:
        raise InputFileError(f'{path}: cannot be read ({exc.strerror or exc})') from exc
    image = cv2.imdecode(data, cv2.IMREAD_COLOR)
    if image is None or image.size == 0:
        raise InputFileError(f'{path}: not an image OpenCV can decode')
    return image


def expand_images(items):
    """Files, folders (their image files, sorted) and globs -> (paths as strings, errors).

    A folder contributes only files with image suffixes; a file named directly is always tried
    (and reported if it is not an image). A glob matching nothing, or a folder without images,
    is an error.
    """
    paths, errors = [], []
    for item in items:
        if os.path.isdir(item):
            found = sorted(
                str(p) for p in pathlib.Path(item).iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
            )
            paths += found
            if not found:
                errors.append(f'{item}: no image files in this folder')
        elif glob.has_magic(item) and not os.path.exists(item):
            matches = sorted(glob.glob(item, recursive=True))
            paths += [m for m in matches if os.path.isfile(m)]
            if not matches:
                errors.append(f'{item}: no files match')
        else:
            paths.append(item)
    return paths, errors


def open_video(source: str) -> cv2.VideoCapture:
    """A file path, or an integer camera index as the original; InputFileError with one line if not."""
    target = int(source) if source.isdigit() else source
    if isinstance(target, str) and not os.path.isfile(target):
        raise InputFileError(f'{source}: file not found')
    capture = cv2.VideoCapture(target)
    if not capture.isOpened():
        raise InputFileError(f'{source}: cannot be opened as a video')
    return capture


def drawn_image_path(output_dir: pathlib.Path, source: str, taken: set[str]) -> pathlib.Path:
    """output_dir/<name>, with _1, _2 ... when two inputs share a name."""
    path = pathlib.Path(source)
    suffix = path.suffix if path.suffix.lower() in IMAGE_SUFFIXES else '.png'
    name, counter = path.stem + suffix, 0
    while name in taken:
        counter += 1
        name = f'{path.stem}_{counter}{suffix}'
    taken.add(name)
    return output_dir / name


class AtomicVideoWriter:
    """mp4v video written under a temporary .mp4 name and renamed on close (only if complete)."""

    def __init__(self, path: pathlib.Path, fps: float):
        self.path, self.fps, self.writer = path, fps, None
        self.temporary = path.with_name(f'.{path.stem}.partial{path.suffix}')

    def write(self, frame):
        if self.writer is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            height, width = frame.shape[:2]
            self.writer = cv2.VideoWriter(
                str(self.temporary), cv2.VideoWriter_fourcc(*'mp4v'), self.fps, (width, height)
            )
            if not self.writer.isOpened():
                raise LwopError(f'{self.path}: OpenCV cannot write an mp4v video here')
        self.writer.write(frame)

    def close(self, keep: bool = True):
        if self.writer is not None:
            self.writer.release()
            if keep:
                os.replace(self.temporary, self.path)
        if self.temporary.exists():
            self.temporary.unlink()


class Display:
    """cv2.imshow only when asked and a display exists; False from show() means Esc was hit."""

    def __init__(self, wanted: bool):
        has_display = sys.platform in ('win32', 'darwin') or bool(
            os.environ.get('DISPLAY') or os.environ.get('WAYLAND_DISPLAY')
        )
        self.enabled = wanted and has_display
        if wanted and not has_display:
            tqdm.write('warning: --show ignored: no display', file=sys.stderr)

    def show(self, image, delay_ms: int) -> bool:
        if not self.enabled:
            return True
        try:
            cv2.imshow(WINDOW_TITLE, image)
            return cv2.waitKey(delay_ms) != ESC
        except cv2.error:  # e.g. opencv-python-headless: no GUI support
            tqdm.write('warning: --show ignored: this OpenCV has no GUI support', file=sys.stderr)
            self.enabled = False
            return True
