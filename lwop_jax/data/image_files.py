"""Image files as the training pipeline will see them: their size from the header, or fully decoded.

The header check reads the few hundred bytes a JPEG or PNG keeps its size in (and a JPEG's EXIF
orientation, which OpenCV applies when it decodes, so a portrait phone photo stored sideways has the
size training sees); it is what ``lwop data check`` does by default, about a thousand times cheaper than
decoding. The full check decodes with :func:`lwop_jax.data.samples.decode_image`, the pipeline's own
decode. NumPy and OpenCV only.
"""

from __future__ import annotations

import os
import struct

import cv2
import numpy as np
from tqdm import tqdm

from lwop_jax.data.samples import UnreadableImage, decode_image

# Start-of-frame markers (baseline, progressive, lossless, ...): all 0xC0-0xCF but DHT, JPG and DAC.
_JPEG_FRAME_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
_JPEG_STANDALONE_MARKERS = frozenset(range(0xD0, 0xD8)) | {0x01}
_EXIF_ORIENTATION_TAG = 0x0112
_ROTATED_ORIENTATIONS = (5, 6, 7, 8)  # EXIF orientations that turn the image by 90 degrees
_PNG_SIGNATURE = b'\x89PNG\r\n\x1a\n'


def image_size(path: str | os.PathLike) -> tuple[int, int]:
    """(width, height) of an image file as OpenCV decodes it: from the header for JPEG and PNG, by
    decoding for other formats. Raises UnreadableImage (empty, not an image, a broken header) or
    OSError (cannot be read)."""
    with open(path, 'rb') as file:
        head = file.read(8)
        if not head:
            raise UnreadableImage('empty file')
        if head.startswith(b'\xff\xd8'):
            file.seek(2)
            return _jpeg_size(file)
        if head == _PNG_SIGNATURE:
            chunk = file.read(16)  # length, b'IHDR', width, height
            if len(chunk) < 16 or chunk[4:8] != b'IHDR':
                raise UnreadableImage('broken PNG header')
            width, height = struct.unpack('>II', chunk[8:16])
            return width, height
        file.seek(0)
        data = file.read()
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise UnreadableImage('not a decodable image')
    return image.shape[1], image.shape[0]


def _jpeg_size(file) -> tuple[int, int]:
    """Walks the JPEG segments up to the first frame header; the EXIF orientation on the way decides
    whether width and height swap (OpenCV's IMREAD_COLOR applies it)."""
    rotated = False
    while True:
        byte = file.read(1)
        while byte == b'\xff':  # fill bytes before a marker
            byte = file.read(1)
        if not byte:
            raise UnreadableImage('broken JPEG header: no frame header before the end of the file')
        marker = byte[0]
        if marker in _JPEG_STANDALONE_MARKERS:
            continue
        if marker in (0xD9, 0xDA):  # end of image, start of scan: no frame header came first
            raise UnreadableImage('broken JPEG header: no frame header before the image data')
        length_bytes = file.read(2)
        if len(length_bytes) < 2:
            raise UnreadableImage('broken JPEG header: truncated segment')
        length = struct.unpack('>H', length_bytes)[0] - 2
        if marker in _JPEG_FRAME_MARKERS:
            frame = file.read(5)  # precision, height, width
            if len(frame) < 5:
                raise UnreadableImage('broken JPEG header: truncated frame header')
            height, width = struct.unpack('>HH', frame[1:5])
            return (height, width) if rotated else (width, height)
        if marker == 0xE1:  # APP1: EXIF
            rotated = _exif_orientation(file.read(length)) in _ROTATED_ORIENTATIONS or rotated
        else:
            file.seek(length, os.SEEK_CUR)


def _exif_orientation(segment: bytes) -> int:
    """The orientation tag of an APP1 segment's first image directory (1, upright, if there is none)."""
    if not segment.startswith(b'Exif\x00\x00') or len(segment) < 14:
        return 1
    tiff = segment[6:]
    order = {b'II': '<', b'MM': '>'}.get(tiff[:2])
    if order is None:
        return 1
    directory = struct.unpack(order + 'I', tiff[4:8])[0]
    if directory + 2 > len(tiff):
        return 1
    count = struct.unpack(order + 'H', tiff[directory : directory + 2])[0]
    for entry in range(directory + 2, min(directory + 2 + 12 * count, len(tiff) - 11), 12):
        tag, _, _ = struct.unpack(order + 'HHI', tiff[entry : entry + 8])
        if tag == _EXIF_ORIENTATION_TAG:
            return struct.unpack(order + 'H', tiff[entry + 8 : entry + 10])[0]
    return 1


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
