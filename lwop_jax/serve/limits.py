"""What a request may be, and the checks that turn a bad one into a status code and one line.

Everything here runs before an image is decoded: the content type (415), the size in bytes (413), the
header's format, completeness and pixel count (400, 413; :mod:`lwop_jax.inference.image_header`), the network input
the requested height would make (400, 413), and the multipart form's ``image`` field.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header

from lwop_jax.errors import LwopError
from lwop_jax.inference.image_header import HeaderError, ImageHeader, read_header

# Raw bodies: the types OpenCV decodes and the header reader knows (the body's bytes decide the format).
IMAGE_TYPES = frozenset(
    {'image/jpeg', 'image/jpg', 'image/pjpeg', 'image/png', 'image/bmp', 'image/x-ms-bmp', 'image/webp'}
)
MULTIPART_TYPE = 'multipart/form-data'
MULTIPART_FIELD = 'image'
MAX_MULTIPART_PARTS = 8  # a form with the image and a few other fields; more is not a client of ours
MIN_SIDE = 8  # below one cell of the network's stride-8 maps an image holds nobody
HEIGHT_RANGE = (32, 1024)  # height_size: the original uses 256 (demo) and 368 (val.py)
# The network input is height_size x (width scaled alike); past this many pixels it needs gigabytes.
MAX_NETWORK_PIXELS = 8_000_000


class RequestError(LwopError):
    """A request the service refuses: its HTTP status and a one-line message for the JSON body."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.headers = status, ' '.join(message.split()), headers or {}


@dataclass(frozen=True)
class Limits:
    max_body_bytes: int = 10 * 2**20
    max_pixels: int = 40_000_000
    body_timeout_s: float = 30.0  # the whole body must arrive within this

    def check_body_size(self, size: int) -> None:
        if size > self.max_body_bytes:
            raise RequestError(413, f'body is larger than the limit of {self.max_body_bytes} bytes')

    def check_image(self, data: bytes) -> ImageHeader:
        """The header of an image body; RequestError 400 (empty, truncated, not an image, too small) or 413
        (too many bytes or pixels)."""
        if not data:
            raise RequestError(400, 'empty body: send the image as the body or as the multipart field "image"')
        self.check_body_size(len(data))
        try:
            header = read_header(data)
        except HeaderError as exc:
            raise RequestError(400, str(exc)) from exc
        if header.pixels > self.max_pixels:
            raise RequestError(
                413, f'image is {header.width}x{header.height} pixels: more than the limit of {self.max_pixels}'
            )
        if min(header.width, header.height) < MIN_SIDE:
            raise RequestError(
                400, f'image is {header.width}x{header.height} pixels: at least {MIN_SIDE} a side are needed'
            )
        return header


def body_kind(content_type: str | None) -> str:
    """'raw' (an image body) or 'multipart' for a Content-Type header; RequestError 415 otherwise."""
    media_type, _ = parse_options_header(content_type or '')
    kind = media_type.decode('latin-1')
    if kind in IMAGE_TYPES:
        return 'raw'
    if kind == MULTIPART_TYPE:
        return 'multipart'
    taken = 'image/jpeg, image/png, image/bmp, image/webp or multipart/form-data'
    raise RequestError(415, f'content type {kind or "(none)"!r} is not taken: send {taken}')


def network_height(value: str | None, default: int) -> int:
    """The ``height_size`` query parameter (the network input height); RequestError 400 when it is not an
    integer in HEIGHT_RANGE."""
    if value is None:
        return default
    low, high = HEIGHT_RANGE
    try:
        height = int(value)
    except ValueError:
        height = None
    if height is None or not low <= height <= high:
        raise RequestError(400, f'height_size must be an integer from {low} to {high}, got {value[:40]!r}')
    return height


def check_network_size(header: ImageHeader, height: int) -> None:
    """RequestError 413 when the network input for this image at ``height`` would pass MAX_NETWORK_PIXELS.
    Both orientations count alike (the elongation), so the EXIF rotation the decoder applies changes nothing."""
    elongation = max(header.width / header.height, header.height / header.width)
    pixels = int(height * height * elongation)
    if pixels > MAX_NETWORK_PIXELS:
        raise RequestError(
            413,
            f'image is {header.width}x{header.height}: at height_size {height} its network input would be '
            f'{pixels} pixels, more than {MAX_NETWORK_PIXELS}',
        )


def multipart_image(body: bytes, content_type: str) -> bytes:
    """The bytes of the form field ``image`` of a multipart/form-data body; RequestError 400 when the form
    is malformed, cut short, or has no such field."""
    _, options = parse_options_header(content_type)
    boundary = options.get(b'boundary')
    if not boundary:
        raise RequestError(400, 'multipart/form-data without a boundary')
    form = _Form()
    try:
        parser = MultipartParser(boundary, form.callbacks(), max_header_count=8, max_header_size=1024)
        parser.write(body)
    except MultipartParseError as exc:
        raise RequestError(400, f'malformed multipart form: {exc}') from exc
    if not form.ended:
        raise RequestError(400, 'multipart form is truncated (no closing boundary)')
    if form.image is None:
        raise RequestError(400, f'multipart form has no field {MULTIPART_FIELD!r}')
    return form.image


class _Form:
    """Collects the ``image`` part of a multipart body from MultipartParser's callbacks."""

    def __init__(self):
        self.parts, self.ended, self.image = 0, False, None
        self._field, self._value, self._headers, self._data = b'', b'', {}, bytearray()

    def callbacks(self) -> Any:  # python_multipart's MultipartCallbacks, a TypedDict of these
        def part_begin():
            self.parts += 1
            if self.parts > MAX_MULTIPART_PARTS:
                raise RequestError(400, f'malformed multipart form: more than {MAX_MULTIPART_PARTS} parts')
            self._headers, self._data = {}, bytearray()

        def header_field(data, start, end):
            self._field += data[start:end]

        def header_value(data, start, end):
            self._value += data[start:end]

        def header_end():
            self._headers[self._field.lower()] = self._value
            self._field, self._value = b'', b''

        def part_data(data, start, end):
            self._data += data[start:end]

        def part_end():
            _, options = parse_options_header(self._headers.get(b'content-disposition', b''))
            if options.get(b'name') == MULTIPART_FIELD.encode() and self.image is None:
                self.image = bytes(self._data)

        def end():
            self.ended = True

        return {
            'on_part_begin': part_begin,
            'on_header_field': header_field,
            'on_header_value': header_value,
            'on_header_end': header_end,
            'on_part_data': part_data,
            'on_part_end': part_end,
            'on_end': end,
        }
