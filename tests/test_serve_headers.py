"""The image header reader and the request checks of lwop serve, without a server: sizes read from the
header agree with OpenCV's decoding, cut-short and foreign files are refused, a huge claimed size is seen
before any decoding."""

import struct
import zlib

import cv2
import numpy as np
import pytest

pytest.importorskip('starlette', reason='needs the serve extra')

from lwop_jax.inference.image_header import HeaderError, TruncatedImage, read_header
from lwop_jax.serve import limits


def encoded(suffix: str, width: int = 37, height: int = 23, channels: int = 3, params=()) -> bytes:
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (height, width, channels) if channels > 1 else (height, width), np.uint8)
    ok, data = cv2.imencode(suffix, image, list(params))
    assert ok
    return data.tobytes()


def png_claiming(width: int, height: int) -> bytes:
    """A PNG of 45 bytes whose header says width x height (no pixel data)."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack('>I', len(body)) + kind + body + struct.pack('>I', zlib.crc32(kind + body))

    return (
        b'\x89PNG\r\n\x1a\n'
        + chunk(b'IHDR', struct.pack('>IIBBBBB', width, height, 8, 2, 0, 0, 0))
        + chunk(b'IEND', b'')
    )


CASES = [
    ('.jpg', 'jpeg', 3, ()),
    ('.jpg', 'jpeg', 1, ()),
    ('.jpg', 'jpeg', 3, (cv2.IMWRITE_JPEG_PROGRESSIVE, 1)),
    ('.png', 'png', 3, ()),
    ('.png', 'png', 4, ()),
    ('.bmp', 'bmp', 3, ()),
    ('.webp', 'webp', 3, (cv2.IMWRITE_WEBP_QUALITY, 80)),  # lossy: VP8
    ('.webp', 'webp', 3, (cv2.IMWRITE_WEBP_QUALITY, 101)),  # lossless: VP8L
]


@pytest.mark.parametrize(('suffix', 'name', 'channels', 'params'), CASES)
@pytest.mark.parametrize(('width', 'height'), [(37, 23), (640, 392), (1, 1)])
def test_header_size_is_the_decoded_size(suffix, name, channels, params, width, height):
    data = encoded(suffix, width, height, channels, params)
    header = read_header(data)
    decoded = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    assert (header.format, header.width, header.height) == (name, decoded.shape[1], decoded.shape[0])


def test_webp_extended_header():
    """VP8X (extended WebP: alpha, animation): the canvas size, 24 bits each, minus one."""
    body = b'VP8X' + struct.pack('<I', 10) + b'\x10\0\0\0' + (70000 - 1).to_bytes(3, 'little')
    body += (300 - 1).to_bytes(3, 'little')
    data = b'RIFF' + struct.pack('<I', len(body) + 4) + b'WEBP' + body
    assert read_header(data).width == 70000 and read_header(data).height == 300


@pytest.mark.parametrize('suffix', ['.jpg', '.png', '.bmp', '.webp'])
def test_cut_short_is_truncated(suffix):
    data = encoded(suffix, 64, 48)
    with pytest.raises(TruncatedImage):
        read_header(data[: len(data) // 2])
    for size in (20, 5):
        with pytest.raises(HeaderError):
            read_header(data[:size])


@pytest.mark.parametrize(
    'data',
    [b'', b'hello world', b'GIF89a' + b'\0' * 40, b'\xff\xd8\xff\xda\0\x02' + b'\0' * 80, b'II*\0' + b'\0' * 40],
    ids=['empty', 'text', 'gif', 'jpeg-scan-before-frame', 'tiff'],
)
def test_foreign_or_damaged_headers_are_refused(data):
    with pytest.raises(HeaderError):
        read_header(data)


def test_huge_claim_is_read_not_decoded():
    data = png_claiming(60000, 60000)
    header = read_header(data)
    assert (header.width, header.height, len(data)) == (60000, 60000, 45)
    with pytest.raises(limits.RequestError) as refused:
        limits.Limits(max_pixels=40_000_000).check_image(data)
    assert refused.value.status == 413 and '60000x60000' in refused.value.message


def test_limits_statuses():
    checks = limits.Limits(max_body_bytes=10_000, max_pixels=10_000)
    small = encoded('.png', 40, 30)
    assert checks.check_image(small).pixels == 1200
    for data, status in [
        (b'', 400),
        (b'x' * 10_001, 413),
        (encoded('.png', 1, 1), 400),
        (encoded('.png', 7, 30), 400),
        (b'not an image', 400),
    ]:
        with pytest.raises(limits.RequestError) as refused:
            checks.check_image(data)
        assert refused.value.status == status, data[:20]
    with pytest.raises(limits.RequestError) as refused:
        checks.check_image(png_claiming(200, 200))
    assert refused.value.status == 413


@pytest.mark.parametrize(
    ('content_type', 'kind'),
    [
        ('image/jpeg', 'raw'),
        ('IMAGE/PNG; charset=binary', 'raw'),
        ('multipart/form-data; boundary=x', 'multipart'),
        ('text/plain', None),
        ('image/gif', None),
        ('', None),
        ('application/json', None),
    ],
)
def test_content_types(content_type, kind):
    if kind is None:
        with pytest.raises(limits.RequestError) as refused:
            limits.body_kind(content_type)
        assert refused.value.status == 415
    else:
        assert limits.body_kind(content_type) == kind


def form(boundary: str, *parts: tuple[str, bytes], close: bool = True) -> bytes:
    body = b''
    for name, content in parts:
        body += f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="x"\r\n'.encode()
        body += b'Content-Type: application/octet-stream\r\n\r\n' + content + b'\r\n'
    return body + (f'--{boundary}--\r\n'.encode() if close else b'')


def test_multipart_image_field():
    image = encoded('.jpg', 50, 40)
    content_type = 'multipart/form-data; boundary=abc123'
    assert limits.multipart_image(form('abc123', ('note', b'hi'), ('image', image)), content_type) == image
    for body, problem in [
        (form('abc123', ('other', image)), "no field 'image'"),
        (form('abc123', ('image', image), close=False), 'truncated'),
        (b'garbage without boundaries', 'malformed'),
        (form('abc123', *[('f', b'x')] * (limits.MAX_MULTIPART_PARTS + 1)), 'malformed'),
    ]:
        with pytest.raises(limits.RequestError) as refused:
            limits.multipart_image(body, content_type)
        assert refused.value.status == 400 and problem in refused.value.message
    with pytest.raises(limits.RequestError, match='boundary'):
        limits.multipart_image(form('abc', ('image', image)), 'multipart/form-data')


@pytest.mark.parametrize(('value', 'ok'), [(None, 256), ('368', 368), ('31', None), ('2000', None), ('1e3', None)])
def test_height_size(value, ok):
    if ok is None:
        with pytest.raises(limits.RequestError):
            limits.network_height(value, 256)
    else:
        assert limits.network_height(value, 256) == ok


def test_network_size_counts_both_orientations():
    wide = read_header(png_claiming(8000, 400))
    with pytest.raises(limits.RequestError) as refused:
        limits.check_network_size(wide, 1024)  # 1024 x 20480 network input
    assert refused.value.status == 413
    limits.check_network_size(wide, 256)  # 256 x 5120: fine
    tall = read_header(png_claiming(400, 8000))
    with pytest.raises(limits.RequestError):
        limits.check_network_size(tall, 1024)  # EXIF may turn it on its side


def test_openapi_lists_every_route():
    from lwop_jax.serve.app import create_app
    from lwop_jax.serve.openapi import OPENAPI

    paths = {route.path for route in create_app(service=None).routes}  # the routes only: no service needed
    assert paths - {'/static/page.js', '/static/page.css'} == set(OPENAPI['paths'])
    for methods in OPENAPI['paths'].values():
        for method in methods.values():
            for status, answer in method['responses'].items():
                if status[0] in '45':
                    assert answer['content']['application/json']['schema'] == {'$ref': '#/components/schemas/Error'}


def test_without_the_serve_extra_one_line(overfit_onnx, tmp_path):
    """`lwop serve` on an install without the serve extra: one line naming it, exit 1, nothing started."""
    from test_core_install import assert_names_extra, lwop_without

    missing = ['starlette', 'uvicorn', 'websockets', 'prometheus_client', 'python_multipart']
    result = lwop_without(missing, ['serve', '--checkpoint-path', overfit_onnx, '--port', '0'], tmp_path, None)
    assert_names_extra(result, missing, 'serve')
