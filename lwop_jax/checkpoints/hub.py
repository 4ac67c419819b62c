"""Published models by name: download once into the cache, convert once to orbax, reuse afterwards.

``resolve_checkpoint('coco-370k')`` returns the path of the original's published
``checkpoint_iter_370000.pth``, downloading it into ``cache_dir() / 'downloads'`` the first time;
``converted_model('coco-370k')`` returns an orbax folder under ``cache_dir() / 'models'`` made from it
with :mod:`lwop_jax.checkpoints.orbax_io` the first time. An existing path is always returned as is.

Downloads are all-or-nothing: bytes go to a uniquely named hidden temp file next to the destination,
which is ``os.replace``-d into place only when the byte count matches Content-Length and the sha256 (when
known) matches. Any failure deletes the temp file, so the cache never holds a partial or corrupt entry.
An interrupted transfer is **restarted** from the beginning on the next call, not resumed: the files
are ~50 MB, and a fixed ``.partial`` name to resume from would need locking against two processes
downloading at once (a unique temp file needs none).

The URL of a known model can be overridden with ``LWOP_JAX_URL_<NAME>`` (name upper-cased, ``-`` -> ``_``,
e.g. ``LWOP_JAX_URL_COCO_370K``), for a mirror; likewise its checksum with ``LWOP_JAX_SHA256_<NAME>``.
The cache is keyed by file name: an overridden URL does not invalidate a file already downloaded.

This module imports only the standard library and tqdm at import time; JAX is loaded by
:func:`converted_model` only.
"""

from __future__ import annotations

import dataclasses
import hashlib
import http.client
import os
import pathlib
import re
import socket
import tempfile
import urllib.error
import urllib.request

from tqdm import tqdm

from lwop_jax.errors import FetchError, ModelFileError
from lwop_jax.paths import cache_dir

CHUNK_BYTES = 1 << 20
DEFAULT_TIMEOUT_S = 30.0


@dataclasses.dataclass(frozen=True)
class KnownModel:
    name: str
    url: str
    file_name: str
    sha256: str | None  # None: not known here, the download is checked against Content-Length only
    approx_size: str  # for humans; the exact size comes from Content-Length
    num_refinement_stages: int
    description: str


KNOWN_MODELS: dict[str, KnownModel] = {
    m.name: m
    for m in (
        KnownModel(
            name='coco-370k',
            # The address given in the original README, section "Pre-trained model".
            url='https://download.01.org/opencv/openvino_training_extensions/models/human_pose_estimation/'
            'checkpoint_iter_370000.pth',
            file_name='checkpoint_iter_370000.pth',
            sha256=None,
            approx_size='~50 MB (weights plus Adam state, as in a checkpoint of the same format)',
            num_refinement_stages=1,
            description='published COCO checkpoint after 370k iterations, 1 refinement stage; '
            'the original reports 40% AP on COCO val2017',
        ),
    )
}


def _env_suffix(name: str) -> str:
    return re.sub(r'[^0-9A-Za-z]', '_', name).upper()


def model_url(name: str) -> str:
    model = known_model(name)
    return os.environ.get(f'LWOP_JAX_URL_{_env_suffix(name)}') or model.url


def model_sha256(name: str) -> str | None:
    model = known_model(name)
    return os.environ.get(f'LWOP_JAX_SHA256_{_env_suffix(name)}') or model.sha256


def known_names_text() -> str:
    return ', '.join(f'{m.name} ({m.description})' for m in KNOWN_MODELS.values())


def known_model(name: str) -> KnownModel:
    try:
        return KNOWN_MODELS[name]
    except KeyError:
        raise ModelFileError(
            f'{name}: file not found (and not a published model; published models by name: {known_names_text()})'
        ) from None


def downloads_dir() -> pathlib.Path:
    return cache_dir() / 'downloads'


def models_dir() -> pathlib.Path:
    return cache_dir() / 'models'


# --- downloading -------------------------------------------------------------------------------------


def _one_line(text) -> str:
    return ' '.join(str(text).split())


def _failure_reason(exc: BaseException) -> str:
    """Short reason for the user: the socket error behind a URLError, not its wrapper."""
    if isinstance(exc, urllib.error.HTTPError):
        return f'HTTP {exc.code} {exc.reason}'
    if isinstance(exc, urllib.error.URLError):
        if not isinstance(exc.reason, BaseException):
            return _one_line(exc.reason)
        exc = exc.reason
    if isinstance(exc, (socket.timeout, TimeoutError)):
        return 'timed out'
    if isinstance(exc, socket.gaierror):
        return f'host name lookup failed: {_one_line(exc)}'
    return _one_line(f'{type(exc).__name__}: {exc}') if str(exc) else type(exc).__name__


def _content_length(response) -> int | None:
    value = response.headers.get('Content-Length')
    return int(value) if value and value.isdigit() else None


def _copy_with_progress(response, out, expected: int | None, label: str, progress: bool) -> tuple[int, str]:
    """Copies the body in chunks; returns (byte count, sha256 hex)."""
    digest = hashlib.sha256()
    received = 0
    with tqdm(
        total=expected, unit='B', unit_scale=True, unit_divisor=1024, desc=label, disable=not progress, leave=False
    ) as bar:
        while chunk := response.read(CHUNK_BYTES):
            out.write(chunk)
            digest.update(chunk)
            received += len(chunk)
            bar.update(len(chunk))
    return received, digest.hexdigest()


def _fetch_into(url: str, out, label: str, sha256: str | None, progress: bool, timeout: float) -> None:
    """Writes the body of ``url`` to ``out``; raises FetchError unless it is complete and verified."""
    request = urllib.request.Request(url, headers={'User-Agent': 'lwop_jax'})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            expected = _content_length(response)
            received, actual_sha256 = _copy_with_progress(response, out, expected, label, progress)
    # URLError and socket errors: offline, refused, timed out, reset; HTTPException: a broken response
    # (e.g. IncompleteRead of a chunked body); ValueError: a malformed URL.
    except (OSError, http.client.HTTPException, ValueError) as exc:
        raise FetchError(url, _failure_reason(exc)) from exc
    # http.client returns an empty read, not an error, when the server closes the connection early:
    # only the byte count tells a truncated transfer from a complete one.
    if expected is not None and received != expected:
        raise FetchError(url, f'connection closed after {received} of {expected} bytes')
    if sha256 and actual_sha256 != sha256.lower():
        raise FetchError(
            url, f'sha256 mismatch: expected {sha256.lower()}, got {actual_sha256}; the file was discarded'
        )


def download(
    url: str, destination, *, sha256: str | None = None, progress: bool = True, timeout: float = DEFAULT_TIMEOUT_S
) -> pathlib.Path:
    """Downloads ``url`` to ``destination`` atomically; returns the destination.

    The file appears at ``destination`` only complete (Content-Length bytes when the server sends it)
    and, when ``sha256`` is given, verified; otherwise FetchError is raised and nothing is left behind.
    ``timeout`` bounds the connection and every read, not the whole transfer.
    """
    destination = pathlib.Path(destination)
    destination.parent.mkdir(parents=True, exist_ok=True)
    # A unique temp name in the same folder: os.replace is atomic only within one file system, and two
    # processes downloading at once must not write into the same file.
    fd, temp_name = tempfile.mkstemp(dir=destination.parent, prefix=f'.{destination.name}.', suffix='.part')
    temp = pathlib.Path(temp_name)
    try:
        with os.fdopen(fd, 'wb') as out:
            _fetch_into(url, out, destination.name, sha256, progress, timeout)
        os.chmod(temp, 0o644)  # mkstemp makes it owner-only; a cached model is an ordinary readable file
        os.replace(temp, destination)
    except BaseException:  # KeyboardInterrupt too: never leave the temp file behind
        temp.unlink(missing_ok=True)
        raise
    return destination


# --- names to files ----------------------------------------------------------------------------------


def fetch_model(
    name: str,
    *,
    url: str | None = None,
    sha256: str | None = None,
    progress: bool = True,
    timeout: float = DEFAULT_TIMEOUT_S,
) -> pathlib.Path:
    """Path of the known model's file in the cache, downloaded first if it is not there yet."""
    model = known_model(name)
    destination = downloads_dir() / model.file_name
    if destination.is_file():  # only complete, verified downloads ever get this name
        return destination
    url = url or model_url(name)
    try:
        return download(url, destination, sha256=sha256 or model_sha256(name), progress=progress, timeout=timeout)
    except FetchError as exc:
        hint = f'download {model.file_name} yourself and pass --checkpoint-path /path/to/{model.file_name}'
        raise FetchError(url, exc.reason, f'cannot download {name} from {url} ({exc.reason}); {hint}') from exc


def resolve_checkpoint(
    name_or_path,
    *,
    url: str | None = None,
    sha256: str | None = None,
    progress: bool = True,
    timeout: float = DEFAULT_TIMEOUT_S,
) -> pathlib.Path:
    """An existing file or folder as is; a known model name as its cached download (fetched if needed).

    Raises ModelFileError (listing the known names) for anything else, FetchError when offline.
    """
    path = pathlib.Path(name_or_path).expanduser()
    if path.exists():
        return path
    return fetch_model(str(name_or_path), url=url, sha256=sha256, progress=progress, timeout=timeout)


def _is_complete_orbax(directory: pathlib.Path) -> bool:
    from lwop_jax.checkpoints import orbax_io  # needs jax and orbax: the [jax] extra

    try:
        orbax_io.read_orbax_meta(directory)
        return True
    except (ModelFileError, OSError):
        return False


def converted_model(
    name: str,
    *,
    url: str | None = None,
    sha256: str | None = None,
    progress: bool = True,
    timeout: float = DEFAULT_TIMEOUT_S,
) -> pathlib.Path:
    """Orbax folder of the known model, converted from its download the first time and reused after."""
    from lwop_jax.checkpoints import orbax_io  # needs jax and orbax: the [jax] extra

    known_model(name)
    target = models_dir() / name
    if _is_complete_orbax(target):
        return target
    checkpoint = fetch_model(name, url=url, sha256=sha256, progress=progress, timeout=timeout)
    model = orbax_io.load_any(checkpoint)
    # save_model lets orbax write a temporary folder and rename it when finished, so an interrupted
    # conversion leaves no folder that _is_complete_orbax would accept.
    return orbax_io.save_model(model, target, source=f'{name} ({checkpoint.name})')
