"""An image's format and size read from its header, without decoding it; and whether its end is there.

Two users: ``lwop serve`` refuses a body by its pixel count before decoding it (a PNG header saying 60000 x
60000 is 33 bytes; decoding it would allocate 10.8 GB first), and ``lwop data check`` reads the size of
every labelled image (a header read is about a thousand times cheaper than a decode). The formats read are
JPEG, PNG, BMP and WebP, which OpenCV decodes; a JPEG's EXIF orientation is read too, since OpenCV applies
it when it decodes (a portrait phone photo stored sideways). Standard library only.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from lwop_jax.errors import InputFileError

FORMATS = ('jpeg', 'png', 'bmp', 'webp')

PNG_SIGNATURE = b'\x89PNG\r\n\x1a\n'
PNG_END = b'IEND\xaeB`\x82'  # the IEND chunk's type and CRC: the last 8 bytes of a whole PNG
JPEG_START, JPEG_END = b'\xff\xd8', b'\xff\xd9'
# Start-of-frame markers (baseline, progressive, lossless, arithmetic); C4 (DHT), C8 (JPG) and CC (DAC)
# share the range but are not frames.
JPEG_FRAME_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
JPEG_SCAN_MARKER = 0xDA
JPEG_STANDALONE_MARKERS = frozenset(range(0xD0, 0xD8)) | {0x01, 0xFF}  # RSTn, TEM: no length field
JPEG_EXIF_MARKER = 0xE1  # APP1
EXIF_ORIENTATION_TAG = 0x0112
ROTATED_ORIENTATIONS = (5, 6, 7, 8)  # EXIF orientations that turn the image by 90 degrees


class HeaderError(InputFileError):
    """The bytes are not a whole image of a known format; the message says what is wrong, in one line."""


class UnknownFormat(HeaderError):
    """Not one of the formats read here (OpenCV may still decode it: TIFF, say)."""


class TruncatedImage(HeaderError):
    """The header or the end of the image is missing: the upload was cut short."""


@dataclass(frozen=True)
class ImageHeader:
    format: str  # one of FORMATS
    width: int  # as stored
    height: int
    orientation: int = 1  # EXIF orientation (JPEG); 5-8 turn the image by 90 degrees

    @property
    def pixels(self) -> int:
        return self.width * self.height

    @property
    def decoded_size(self) -> tuple[int, int]:
        """(width, height) as OpenCV's IMREAD_COLOR decodes it: the EXIF orientation applied."""
        return (self.height, self.width) if self.orientation in ROTATED_ORIENTATIONS else (self.width, self.height)


def read_header(data: bytes, *, whole: bool = True) -> ImageHeader:
    """The format and size of an image file's bytes; HeaderError (TruncatedImage when cut short) if they are
    not a JPEG, PNG, BMP or WebP file. Reads the header segments only, never the pixels.

    ``whole``: ``data`` is the whole file, whose end is checked too (an upload cut short); otherwise it may
    be the file's first bytes only (TruncatedImage then says the header lies beyond them)."""
    if data.startswith(PNG_SIGNATURE):
        header = _png(data)
    elif data.startswith(JPEG_START):
        header = _jpeg(data)
    elif data.startswith(b'BM'):
        header = _bmp(data)
    elif data.startswith(b'RIFF') and data[8:12] == b'WEBP':
        header = _webp(data)
    else:
        raise UnknownFormat('not a JPEG, PNG, BMP or WebP image')
    if header.width <= 0 or header.height <= 0:
        raise HeaderError(f'{header.format} header gives an empty size ({header.width}x{header.height})')
    if whole:
        _check_end(data, header.format)
    return header


def _check_end(data: bytes, image_format: str) -> None:
    """TruncatedImage when the file's end is missing (an upload cut short)."""
    if image_format == 'png':
        complete = data.rstrip(b'\0').endswith(PNG_END)
    elif image_format == 'jpeg':
        complete = JPEG_END in data[-64:]  # EOI closes the image; tools may pad a few bytes after it
    else:  # BMP and WebP (RIFF) say their file size
        expected = _unpack('<I', data, 2, 'BMP header')[0] if image_format == 'bmp' else _webp_file_size(data)
        complete = len(data) >= expected
    if not complete:
        raise TruncatedImage(f'{image_format.upper()} is truncated (its end is missing; {len(data)} bytes)')


def _unpack(fmt: str, data: bytes, offset: int, what: str) -> tuple:
    if offset + struct.calcsize(fmt) > len(data):
        raise TruncatedImage(f'{what} is truncated ({len(data)} bytes)')
    return struct.unpack_from(fmt, data, offset)


def _png(data: bytes) -> ImageHeader:
    length, kind, width, height = _unpack('>I4sII', data, 8, 'PNG header')
    if kind != b'IHDR' or length != 13:
        raise HeaderError('PNG without its IHDR header chunk')
    return ImageHeader('png', width, height)


def _jpeg(data: bytes) -> ImageHeader:
    """Walks the marker segments up to the first start-of-frame, which holds the size; an EXIF segment on
    the way gives the orientation."""
    offset, orientation = 2, 1
    while True:
        (first,) = _unpack('B', data, offset, 'JPEG header')
        if first != 0xFF:
            raise HeaderError(f'JPEG header is damaged (byte {offset} is not a marker)')
        (marker,) = _unpack('B', data, offset + 1, 'JPEG header')
        if marker in JPEG_STANDALONE_MARKERS:  # fill bytes and markers without a length
            offset += 1 if marker == 0xFF else 2
            continue
        (length,) = _unpack('>H', data, offset + 2, 'JPEG header')
        if marker in JPEG_FRAME_MARKERS:
            height, width = _unpack('>HH', data, offset + 5, 'JPEG header')
            return ImageHeader('jpeg', width, height, orientation)
        if marker == JPEG_SCAN_MARKER or length < 2:
            raise HeaderError('JPEG has no frame header before its image data')
        if marker == JPEG_EXIF_MARKER and orientation == 1:
            orientation = _exif_orientation(data[offset + 4 : offset + 2 + length])
        offset += 2 + length


def _exif_orientation(segment: bytes) -> int:
    """The orientation tag of an APP1 segment's first image directory (1, upright, if there is none)."""
    tiff = segment[6:]
    order = {b'II': '<', b'MM': '>'}.get(tiff[:2])
    if not segment.startswith(b'Exif\x00\x00') or order is None or len(tiff) < 8:
        return 1
    directory = struct.unpack(order + 'I', tiff[4:8])[0]
    if directory + 2 > len(tiff):
        return 1
    count = struct.unpack(order + 'H', tiff[directory : directory + 2])[0]
    for entry in range(directory + 2, min(directory + 2 + 12 * count, len(tiff) - 11), 12):
        tag, _, _ = struct.unpack(order + 'HHI', tiff[entry : entry + 8])
        if tag == EXIF_ORIENTATION_TAG:
            return struct.unpack(order + 'H', tiff[entry + 8 : entry + 10])[0]
    return 1


def _bmp(data: bytes) -> ImageHeader:
    (header_size,) = _unpack('<I', data, 14, 'BMP header')
    if header_size == 12:  # OS/2 BITMAPCOREHEADER: 16-bit sizes
        width, height = _unpack('<HH', data, 18, 'BMP header')
    elif header_size >= 40:
        width, height = _unpack('<ii', data, 18, 'BMP header')
    else:
        raise HeaderError(f'BMP with an unknown header of {header_size} bytes')
    return ImageHeader('bmp', width, abs(height))  # a negative height: rows stored top-down


def _webp_file_size(data: bytes) -> int:
    return _unpack('<I', data, 4, 'WebP header')[0] + 8  # the RIFF size counts what follows its field


def _webp(data: bytes) -> ImageHeader:
    (chunk,) = _unpack('4s', data, 12, 'WebP header')
    if chunk == b'VP8 ':  # lossy: a key frame's start code, then 14-bit sizes
        start, width, height = _unpack('<3sHH', data, 23, 'WebP header')
        if start != b'\x9d\x01\x2a':
            raise HeaderError('WebP (lossy) without its key frame start code')
        return ImageHeader('webp', width & 0x3FFF, height & 0x3FFF)
    if chunk == b'VP8L':  # lossless: signature 0x2f, then width - 1 and height - 1 in 14 bits each
        signature, bits = _unpack('<BI', data, 20, 'WebP header')
        if signature != 0x2F:
            raise HeaderError('WebP (lossless) without its signature')
        return ImageHeader('webp', (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1)
    if chunk == b'VP8X':  # extended: canvas width - 1 and height - 1 in 24 bits each
        low_w, high_w, low_h, high_h = _unpack('<HBHB', data, 24, 'WebP header')
        return ImageHeader('webp', (low_w | high_w << 16) + 1, (low_h | high_h << 16) + 1)
    raise HeaderError(f'WebP with an unknown first chunk {chunk!r}')
