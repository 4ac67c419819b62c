"""An estimator over many inputs: a list of images or one video, with drawn outputs and JSON records.

What ``lwop infer`` does once its arguments are parsed. Each bad input is reported in one line on
stderr and skipped; the callers count the failures. CPU inference path: NumPy, OpenCV, tqdm.
"""

from __future__ import annotations

import pathlib
import sys

import cv2
from tqdm import tqdm

from lwop_jax import atomic
from lwop_jax.errors import InputFileError
from lwop_jax.inference.media import AtomicVideoWriter, Display, drawn_image_path, expand_images, open_video, read_image
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


def detect_file(estimator, path):
    """(image, PoseResult) of one file; InputFileError messages name the file."""
    image = read_image(path)
    try:
        return image, estimator(image)
    except InputFileError as exc:
        raise InputFileError(f'{path}: {exc}') from exc


def run_images(estimator, items, output_dir: pathlib.Path | None = None, show: bool = False):
    """Files, folders and globs -> (the JSON 'images' list, number of failed inputs)."""
    paths, errors = expand_images(items)
    for error in errors:
        report(error)
    records: list[dict] = []
    failed, taken, display = len(errors), set[str](), Display(show)
    for path in tqdm(paths, unit='img', disable=None, file=sys.stderr):
        try:
            image, result = detect_file(estimator, path)
        except InputFileError as exc:
            report(str(exc))
            failed += 1
            continue
        records.append({'file': path, 'height': image.shape[0], 'width': image.shape[1], 'people': result.to_json()})
        if output_dir or display.enabled:
            drawn = result.draw(image)
            if output_dir:
                target = drawn_image_path(output_dir, path, taken)
                atomic.write_bytes(target, cv2.imencode(target.suffix, drawn)[1].tobytes())
            if not display.show(drawn, 0):
                break
    return records, failed


def _video_frames(estimator, capture, total, writer, display, frames, size: list) -> bool:
    """Runs the estimator on every frame, appending records to ``frames`` and keeping the frame size in
    ``size``; True when the video ended (or Esc was hit): an exception leaves it incomplete."""
    with tqdm(total=total, unit='frame', disable=None, file=sys.stderr) as progress:
        while True:
            was_read, frame = capture.read()
            if not was_read:
                return True
            size[:] = frame.shape[:2]
            result = estimator(frame)
            frames.append({'index': len(frames), 'people': result.to_json()})
            progress.update()
            if writer or display.enabled:
                drawn = result.draw(frame)
                if writer:
                    writer.write(drawn)
                if not display.show(drawn, 1):
                    return True


def run_video(estimator, source: str, output_dir: pathlib.Path | None = None, show: bool = False):
    """A video file or camera index -> (the JSON video record with its 'frames', failures: 0 or 1)."""
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
        complete = _video_frames(estimator, capture, total, writer, Display(show), frames, size)
    finally:
        capture.release()
        if writer:
            writer.close(keep=complete and bool(frames))
    if not frames:
        report(f'{source}: no frame could be read')
        return None, 1
    return {'video': source, 'fps': fps, 'height': size[0], 'width': size[1], 'frames': frames}, 0
