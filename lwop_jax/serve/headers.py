"""An image's format and size read from its header, and whether its end is there, without decoding it.

A client can send a small file that claims a huge picture (a PNG header saying 60000 x 60000 is 33 bytes);
decoding it would allocate the pixels (10.8 GB here) before anything could refuse it. So the service reads
the size from the header first and decodes only what passes its pixel limit. The formats read are the
ones the service takes: JPEG, PNG, BMP and WebP (OpenCV decodes all four); anything else is refused.

Standard library and lwop_jax.errors only.
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


class HeaderError(InputFileError):
    """The bytes are not a whole image of a known format; the message says what is wrong, in one line."""


class TruncatedImage(HeaderError):
    """The header or the end of the image is missing: the upload was cut short."""


@dataclass(frozen=True)
class ImageHeader:
    format: str  # one of FORMATS
    width: int
    height: int

    @property
    def pixels(self) -> int:
        return self.width * self.height


def read_header(data: bytes) -> ImageHeader:
    """The format and size of an image file's bytes; HeaderError (TruncatedImage when cut short) if the
    bytes are not a whole JPEG, PNG, BMP or WebP file. Reads at most the header segments, never the
    pixels."""
    if data.startswith(PNG_SIGNATURE):
        header = _png(data)
    elif data.startswith(JPEG_START):
        header = _jpeg(data)
    elif data.startswith(b'BM'):
        header = _bmp(data)
    elif data.startswith(b'RIFF') and data[8:12] == b'WEBP':
        header = _webp(data)
    else:
        raise HeaderError('not a JPEG, PNG, BMP or WebP image')
    if header.width <= 0 or header.height <= 0:
        raise HeaderError(f'{header.format} header gives an empty size ({header.width}x{header.height})')
    return header


def _unpack(fmt: str, data: bytes, offset: int, what: str) -> tuple:
    if offset + struct.calcsize(fmt) > len(data):
        raise TruncatedImage(f'{what} is truncated ({len(data)} bytes)')
    return struct.unpack_from(fmt, data, offset)


def _png(data: bytes) -> ImageHeader:
    length, kind, width, height = _unpack('>I4sII', data, 8, 'PNG header')
    if kind != b'IHDR' or length != 13:
        raise HeaderError('PNG without its IHDR header chunk')
    if not data.rstrip(b'\0').endswith(PNG_END):
        raise TruncatedImage('PNG is truncated (no IEND chunk at its end)')
    return ImageHeader('png', width, height)


def _jpeg(data: bytes) -> ImageHeader:
    """Walks the marker segments up to the first start-of-frame, which holds the size."""
    offset = 2
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
            break
        if marker == JPEG_SCAN_MARKER or length < 2:
            raise HeaderError('JPEG has no frame header before its image data')
        offset += 2 + length
    if JPEG_END not in data[-64:]:  # EOI closes the image; tools may pad a few bytes after it
        raise TruncatedImage('JPEG is truncated (no end-of-image marker)')
    return ImageHeader('jpeg', width, height)


def _bmp(data: bytes) -> ImageHeader:
    file_size, _, _, header_size = _unpack('<I4sII', data, 2, 'BMP header')
    if header_size == 12:  # OS/2 BITMAPCOREHEADER: 16-bit sizes
        width, height = _unpack('<HH', data, 18, 'BMP header')
    elif header_size >= 40:
        width, height = _unpack('<ii', data, 18, 'BMP header')
    else:
        raise HeaderError(f'BMP with an unknown header of {header_size} bytes')
    if len(data) < file_size:
        raise TruncatedImage(f'BMP is truncated ({len(data)} of {file_size} bytes)')
    return ImageHeader('bmp', width, abs(height))  # a negative height: rows stored top-down


def _webp(data: bytes) -> ImageHeader:
    (riff_size,) = _unpack('<I', data, 4, 'WebP header')
    if len(data) < riff_size + 8:
        raise TruncatedImage(f'WebP is truncated ({len(data)} of {riff_size + 8} bytes)')
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
