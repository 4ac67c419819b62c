"""Image files as the training pipeline will see them: their size from the header, or fully decoded.

The header check reads the first bytes of a JPEG, PNG, BMP or WebP file for its size and a JPEG's EXIF
orientation (:mod:`lwop_jax.inference.image_header`, which ``lwop serve`` uses too); it is what
``lwop data check`` does by default, about a thousand times cheaper than decoding. The full check decodes
with :func:`lwop_jax.data.samples.decode_image`, the pipeline's own decode. NumPy and OpenCV only.
"""

from __future__ import annotations

import os

import cv2
import numpy as np
from tqdm import tqdm

from lwop_jax.data.samples import UnreadableImage, decode_image
from lwop_jax.inference.image_header import HeaderError, TruncatedImage, UnknownFormat, read_header

# Most files keep their size in the first few hundred bytes; a JPEG can put a large EXIF thumbnail or ICC
# profile first, and is then read whole.
HEAD_BYTES = 64 * 1024


def image_size(path: str | os.PathLike) -> tuple[int, int]:
    """(width, height) of an image file as OpenCV decodes it (the EXIF orientation applied): from the header
    for JPEG, PNG, BMP and WebP, by decoding for other formats. Raises UnreadableImage (empty, not an image,
    a broken header) or OSError (cannot be read)."""
    with open(path, 'rb') as file:
        data = file.read(HEAD_BYTES)
        if not data:
            raise UnreadableImage('empty file')
        try:
            return _size_from_header(data, file)
        except UnknownFormat:
            data += file.read()  # another format: OpenCV decides
        except HeaderError as exc:
            raise UnreadableImage(f'broken header: {exc}') from None
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise UnreadableImage('not a decodable image')
    return image.shape[1], image.shape[0]


def _size_from_header(head: bytes, file) -> tuple[int, int]:
    try:
        return read_header(head, whole=False).decoded_size
    except TruncatedImage:
        if len(head) < HEAD_BYTES:  # that was the whole file: the header itself is cut short
            raise
        return read_header(head + file.read(), whole=False).decoded_size


def image_problem(path: str | os.PathLike, width: int, height: int, decode: bool = False) -> str | None:
    """Why training could not use this image of annotated size ``width`` x ``height`` (None: it can).

    ``decode``: decode it fully, as the pipeline does, instead of reading its header (slower; it also
    finds corrupt image data that a sound header hides)."""
    try:
        if decode:
            with open(path, 'rb') as file:
                decode_image(file.read(), int(width), int(height))
            return None
        size = image_size(path)
    except UnreadableImage as exc:
        return str(exc)
    except OSError as exc:
        return exc.strerror or str(exc)
    if size != (int(width), int(height)):
        return f'its size {size[0]}x{size[1]} is not the annotated {int(width)}x{int(height)}'
    return None


def image_problems(images: list, images_dir: str, decode: bool = False, progress: bool = False):
    """(missing file names, 'file name: problem' of the unreadable ones) of COCO image entries (file_name,
    width, height) in a folder, with a progress bar when ``progress``."""
    missing, unreadable = [], []
    what = 'reading images' if decode else 'image headers'
    for image in tqdm(images, desc=what, unit='image', disable=not progress, leave=False):
        path = os.path.join(images_dir, image['file_name'])
        if not os.path.isfile(path):
            missing.append(image['file_name'])
            continue
        problem = image_problem(path, image['width'], image['height'], decode)
        if problem:
            unreadable.append(f'{image["file_name"]}: {problem}')
    return missing, unreadable
