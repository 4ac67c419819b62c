"""An estimator over many inputs: a list of images or one video, with drawn outputs and JSON records.

What ``lwop infer`` does once its arguments are parsed. Each bad input is reported in one line on
stderr and skipped; the callers count the failures. Reading, the network and decoding overlap
(:func:`pipelined`, on by default) with the same results in the same order; folders may go through the
backend in batches of one padded size. CPU inference path: NumPy, OpenCV, tqdm and the standard library.
"""

from __future__ import annotations

import pathlib
import sys
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from functools import partial
from typing import NamedTuple

import cv2
import numpy as np
from tqdm import tqdm

from lwop_jax import atomic
from lwop_jax.errors import InputFileError
from lwop_jax.inference.media import (
    AtomicVideoWriter,
    Display,
    drawn_image_path,
    expand_images,
    open_video,
    read_image,
)
from lwop_jax.inference.results import keypoint_names


def json_header(estimator, model, height_size: int) -> dict:
    """The head of ``lwop infer``'s JSON: keypoint names, the model, its backend and precision, the network
    input height."""
    return {
        'keypoint_names': keypoint_names(estimator.schema),
        'keypoint_schema': estimator.schema.name,
        'model': str(model),
        'backend': estimator.backend_name,
        'precision': estimator.precision,
        'height_size': height_size,
    }


def quiet_opencv():
    """OpenCV prints its own warnings for unreadable files; each bad input is reported here in one line
    of our own, so OpenCV's are silenced (FFmpeg's through OPENCV_FFMPEG_LOGLEVEL, set by the CLI)."""
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)


def report(message: str):
    """One line on stderr that does not break the progress bar."""
    tqdm.write(f'error: {message}', file=sys.stderr)


# ------------------------------------------------------------------------------------------------
# The pipeline: reading, the network and decoding at the same time
# ------------------------------------------------------------------------------------------------

_END = object()  # what next() returns at the end of the inputs


def pipelined(items, network, enabled: bool = True):
    """Yields ``(item, network(item))`` for every item of the iterator ``items``, in order.

    Pipelined (``enabled``), three steps overlap: while the caller handles the result of item t - 1
    (between two yields: decoding, tracking, drawing, writing), a worker thread runs ``network`` on item t
    and another one takes item t + 1 from ``items`` (reading and pre-processing it). Each round starts the
    two workers, hands the previous result to the caller and then waits for both, so at most one item is
    read ahead and one is in the network; the results come in input order by construction, and whatever
    the caller does in order (tracking) sees them exactly as the sequential loop would. Threads suffice:
    ONNX Runtime, OpenVINO and OpenCV release the GIL while they work. ``items`` is only ever advanced by
    one thread at a time; an exception of either worker is raised here, in the caller's thread.

    Not ``enabled``: the plain loop, one step after the other (for debugging and comparison).
    Closing the generator early (Esc, an error in the caller) waits for the two workers to finish.
    """
    if not enabled:
        for item in items:
            yield item, network(item)
        return
    with ThreadPoolExecutor(max_workers=2, thread_name_prefix='lwop-pipeline') as workers:
        item, done = next(items, _END), None
        while item is not _END:
            running = workers.submit(network, item)  # the network on item t ...
            following = workers.submit(next, items, _END)  # ... while item t + 1 is read and pre-processed
            if done is not None:
                yield done  # ... and the caller decodes and draws item t - 1
            done = item, running.result()
            try:
                item = following.result()
            except Exception:
                yield done  # the items read before the failing one are handled first, as in the plain loop
                raise
        if done is not None:
            yield done


# ------------------------------------------------------------------------------------------------
# Images: files, folders and globs, in batches of one padded size
# ------------------------------------------------------------------------------------------------


class PreparedImage(NamedTuple):
    """One input file read and pre-processed, or the one-line reason it could not be."""

    path: str
    image: np.ndarray | None = None
    network_input: np.ndarray | None = None
    geometry: object = None
    error: str | None = None


def prepare_file(estimator, path) -> PreparedImage:
    """Reads and pre-processes one file; an InputFileError becomes the item's error (naming the file)."""
    try:
        image = read_image(path)
    except InputFileError as exc:
        return PreparedImage(path, error=str(exc))
    try:
        return PreparedImage(path, image, *estimator.preprocess(image))
    except InputFileError as exc:
        return PreparedImage(path, error=f'{path}: {exc}')


def detect_file(estimator, path):
    """(image, PoseResult) of one file; InputFileError messages name the file."""
    prepared = prepare_file(estimator, path)
    if prepared.error is not None:
        raise InputFileError(prepared.error)
    heatmaps, pafs = estimator.run(prepared.network_input)
    return prepared.image, estimator.track(estimator.postprocess(heatmaps[0], pafs[0], prepared.geometry))


def _prepared_chunks(estimator, paths, batch_size: int):
    """Lists of up to ``batch_size`` PreparedImage, in input order."""
    for start in range(0, len(paths), batch_size):
        yield [prepare_file(estimator, path) for path in paths[start : start + batch_size]]


def _run_chunk(estimator, chunk, batch_size: int):
    """The maps of a chunk's good images (inputs of one padded size go through the backend together)."""
    return estimator.run_grouped([p.network_input for p in chunk if p.error is None], batch_size)


def run_images(
    estimator,
    items,
    output_dir: pathlib.Path | None = None,
    show: bool = False,
    batch_size: int = 1,
    pipeline: bool = True,
):
    """Files, folders and globs -> (the JSON 'images' list, number of failed inputs).

    ``batch_size`` images are read at a time; those of them whose network inputs share a padded size go
    through the backend as one batch, the others alone. ``pipeline``: see :func:`pipelined`. Records, drawn
    images and error lines come in input order either way.
    """
    paths, errors = expand_images(items)
    for error in errors:
        report(error)
    records: list[dict] = []
    failed, taken, display = len(errors), set[str](), Display(show)
    chunks = _prepared_chunks(estimator, paths, batch_size)
    run_chunk = partial(_run_chunk, estimator, batch_size=batch_size)
    with (
        tqdm(total=len(paths), unit='img', disable=None, file=sys.stderr) as progress,
        closing(pipelined(chunks, run_chunk, pipeline)) as results,
    ):
        for chunk, maps in results:
            good = iter(maps)
            for prepared in chunk:
                progress.update()
                if prepared.error is not None:
                    report(prepared.error)
                    failed += 1
                    continue
                heatmaps, pafs = next(good)
                result = estimator.track(estimator.postprocess(heatmaps, pafs, prepared.geometry))
                image = prepared.image
                records.append(
                    {
                        'file': prepared.path,
                        'height': image.shape[0],
                        'width': image.shape[1],
                        'people': result.to_json(),
                    }
                )
                if output_dir or display.enabled:
                    drawn = result.draw(image)
                    if output_dir:
                        target = drawn_image_path(output_dir, prepared.path, taken)
                        atomic.write_bytes(target, cv2.imencode(target.suffix, drawn)[1].tobytes())
                    if not display.show(drawn, 0):
                        return records, failed
    return records, failed


# ------------------------------------------------------------------------------------------------
# One video: frames in order, tracked
# ------------------------------------------------------------------------------------------------


def _read_frames(estimator, capture):
    """(frame, network input, geometry) for every frame until the video ends."""
    while True:
        was_read, frame = capture.read()
        if not was_read:
            return
        yield (frame, *estimator.preprocess(frame))


def _video_frames(estimator, capture, total, writer, display, frames, size: list, pipeline: bool) -> bool:
    """Runs the estimator on every frame, appending records to ``frames`` and keeping the frame size in
    ``size``; True when the video ended (or Esc was hit): an exception leaves it incomplete. Tracking
    sees the frames in order, pipelined or not."""
    with (
        tqdm(total=total, unit='frame', disable=None, file=sys.stderr) as progress,
        closing(pipelined(_read_frames(estimator, capture), lambda item: estimator.run(item[1]), pipeline)) as results,
    ):
        for (frame, _, geometry), (heatmaps, pafs) in results:
            size[:] = frame.shape[:2]
            result = estimator.track(estimator.postprocess(heatmaps[0], pafs[0], geometry))
            frames.append({'index': len(frames), 'people': result.to_json()})
            progress.update()
            if writer or display.enabled:
                drawn = result.draw(frame)
                if writer:
                    writer.write(drawn)
                if not display.show(drawn, 1):
                    return True
    return True


def run_video(
    estimator, source: str, output_dir: pathlib.Path | None = None, show: bool = False, pipeline: bool = True
):
    """A video file or camera index -> (the JSON video record with its 'frames', failures: 0 or 1).

    ``pipeline``: the next frame is read and pre-processed, and the previous one decoded, tracked and drawn,
    while the network runs (:func:`pipelined`); the records are the same as without.
    """
    try:
        capture = open_video(source)
    except InputFileError as exc:
        report(str(exc))
        return None, 1
    fps = capture.get(cv2.CAP_PROP_FPS)
    fps = fps if fps and fps == fps and fps > 0 else 30.0  # cameras may report 0 or NaN
    total = int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) or None
    name = f'camera{source}' if source.isdigit() else pathlib.Path(source).stem
    writer = AtomicVideoWriter(output_dir / f'{name}_poses.mp4', fps) if output_dir else None
    frames: list[dict] = []
    size: list = [None, None]
    complete = False
    try:
        complete = _video_frames(estimator, capture, total, writer, Display(show), frames, size, pipeline)
    finally:
        capture.release()
        if writer:
            writer.close(keep=complete and bool(frames))
    if not frames:
        report(f'{source}: no frame could be read')
        return None, 1
    return {'video': source, 'fps': fps, 'height': size[0], 'width': size[1], 'frames': frames}, 0
