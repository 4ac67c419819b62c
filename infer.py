"""Finds people in images or a video: the original demo.py, scriptable.

  python infer.py --checkpoint-path model.onnx --images photos/ 'more/*.jpg' --json poses.json
  python infer.py --checkpoint-path model.pth --video clip.mp4 --output-dir out/ --json poses.json

The original's flags work as before (--checkpoint-path, --height-size, --images, --video,
--track, --smooth, --cpu). --images takes files, folders (their images, sorted) and globs.
--output-dir gets the drawn images (a video gets an annotated mp4), --json the keypoints in image
pixels (a missing keypoint is [-1, -1, 0]). Bad inputs are reported on stderr, one line each,
and skipped; the exit status is 1 when anything failed. Images are independent (no track ids);
a video is tracked (--track 1, the default) and smoothed (--smooth 1).
"""
import argparse
import glob
import os
import pathlib
import sys

import cv2
from tqdm import tqdm

from lwop_jax import atomic
from lwop_jax.estimator import ImageError, PoseEstimator, read_image
from lwop_jax.results import keypoint_names
from lwop_jax.runtime import BACKENDS, BackendError

IMAGE_SUFFIXES = {'.jpg', '.jpeg', '.png', '.bmp', '.tif', '.tiff', '.webp', '.jp2', '.pbm',
                  '.pgm', '.ppm', '.pnm', '.sr', '.ras'}
WINDOW_TITLE = 'Lightweight Human Pose Estimation'
ESC = 27


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--checkpoint-path', default='coco-370k',
                        help='model: .onnx, OpenVINO .xml, torch .pth, orbax folder, or a published model by '
                             'name (default %(default)s: the original\'s checkpoint, downloaded and cached once)')
    parser.add_argument('--height-size', type=int, default=256, help='network input height')
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument('--images', nargs='+', help='image files, folders or globs')
    source.add_argument('--video', help='video file or camera index')
    parser.add_argument('--track', type=int, default=1, help='track people ids in a video (1/0); images are independent')
    parser.add_argument('--smooth', type=int, default=1, help='smooth tracked keypoints (1/0)')
    parser.add_argument('--cpu', action='store_true',
                        help='accepted for compatibility; the CPU runtimes run on the CPU anyway')
    parser.add_argument('--backend', choices=sorted(BACKENDS), help='default: by model file type')
    parser.add_argument('--threads', type=int, help='runtime CPU threads (default: the runtime\'s)')
    parser.add_argument('--output-dir', type=pathlib.Path, help='write drawn images / annotated mp4')
    parser.add_argument('--json', type=pathlib.Path, help='write the keypoints to this JSON file')
    parser.add_argument('--show', action='store_true', help='show results in a window (Esc stops)')
    return parser.parse_args(argv)


def quiet_opencv():
    """OpenCV and FFmpeg print their own warnings for unreadable files; this script reports
    each bad input in one line of its own, so theirs are silenced (the environment can override)."""
    os.environ.setdefault('OPENCV_FFMPEG_LOGLEVEL', '-8')         # AV_LOG_QUIET
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)


def report(message: str):
    """One line on stderr that does not break the progress bar."""
    tqdm.write(f'error: {message}', file=sys.stderr)


# ------------------------------------------------------------------------------------------------
# Inputs
# ------------------------------------------------------------------------------------------------

def expand_images(items):
    """Files, folders (their image files, sorted) and globs -> (paths as strings, errors).

    A folder contributes only files with image suffixes; a file named directly is always tried
    (and reported if it is not an image). A glob matching nothing, or a folder without images,
    is an error.
    """
    paths, errors = [], []
    for item in items:
        if os.path.isdir(item):
            found = sorted(str(p) for p in pathlib.Path(item).iterdir()
                           if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
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
    """A file path, or an integer camera index as the original; IOError with one line if not."""
    target = int(source) if source.isdigit() else source
    if isinstance(target, str) and not os.path.isfile(target):
        raise IOError(f'{source}: file not found')
    capture = cv2.VideoCapture(target)
    if not capture.isOpened():
        raise IOError(f'{source}: cannot be opened as a video')
    return capture


# ------------------------------------------------------------------------------------------------
# Outputs
# ------------------------------------------------------------------------------------------------

def write_json(path: pathlib.Path, payload: dict):
    atomic.write_json(path, payload, indent=1)


def drawn_image_path(output_dir: pathlib.Path, source: str, taken: set) -> pathlib.Path:
    """output_dir/<name>, with _1, _2 ... when two inputs share a name."""
    source = pathlib.Path(source)
    suffix = source.suffix if source.suffix.lower() in IMAGE_SUFFIXES else '.png'
    name, counter = source.stem + suffix, 0
    while name in taken:
        counter += 1
        name = f'{source.stem}_{counter}{suffix}'
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
            self.writer = cv2.VideoWriter(str(self.temporary), cv2.VideoWriter_fourcc(*'mp4v'),
                                          self.fps, (width, height))
            if not self.writer.isOpened():
                raise IOError(f'{self.path}: OpenCV cannot write an mp4v video here')
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
            os.environ.get('DISPLAY') or os.environ.get('WAYLAND_DISPLAY'))
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


# ------------------------------------------------------------------------------------------------
# Runs
# ------------------------------------------------------------------------------------------------

def detect_file(estimator, path):
    """(image, PoseResult) of one file; ImageError messages name the file."""
    image = read_image(path)
    try:
        return image, estimator(image)
    except ImageError as exc:
        raise ImageError(f'{path}: {exc}') from exc


def run_images(estimator, items, args):
    """Returns (the JSON 'images' list, number of failed inputs)."""
    paths, errors = expand_images(items)
    for error in errors:
        report(error)
    records, failed, taken, display = [], len(errors), set(), Display(args.show)
    for path in tqdm(paths, unit='img', disable=None, file=sys.stderr):
        try:
            image, result = detect_file(estimator, path)
        except ImageError as exc:
            report(str(exc))
            failed += 1
            continue
        records.append({'file': path, 'height': image.shape[0], 'width': image.shape[1],
                        'people': result.to_json()})
        if args.output_dir or display.enabled:
            drawn = result.draw(image)
            if args.output_dir:
                target = drawn_image_path(args.output_dir, path, taken)
                atomic.write_bytes(target, cv2.imencode(target.suffix, drawn)[1].tobytes())
            if not display.show(drawn, 0):
                break
    return records, failed


def run_video(estimator, source, args):
    """Returns (the JSON video record with its 'frames', number of failures: 0 or 1)."""
    try:
        capture = open_video(source)
    except IOError as exc:
        report(str(exc))
        return None, 1
    fps = capture.get(cv2.CAP_PROP_FPS)
    fps = fps if fps and fps == fps and fps > 0 else 30.0   # cameras may report 0 or NaN
    total = int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) or None
    name = f'camera{source}' if source.isdigit() else pathlib.Path(source).stem
    writer = AtomicVideoWriter(args.output_dir / f'{name}_poses.mp4', fps) if args.output_dir else None
    display, frames, complete, size = Display(args.show), [], False, (None, None)
    try:
        with tqdm(total=total, unit='frame', disable=None, file=sys.stderr) as progress:
            while True:
                was_read, frame = capture.read()
                if not was_read:
                    complete = True
                    break
                size = frame.shape[:2]
                result = estimator(frame)
                frames.append({'index': len(frames), 'people': result.to_json()})
                progress.update()
                if writer or display.enabled:
                    drawn = result.draw(frame)
                    if writer:
                        writer.write(drawn)
                    if not display.show(drawn, 1):
                        complete = True
                        break
    finally:
        capture.release()
        if writer:
            writer.close(keep=complete and bool(frames))
    if not frames:
        report(f'{source}: no frame could be read')
        return None, 1
    return {'video': source, 'fps': fps, 'height': size[0], 'width': size[1], 'frames': frames}, 0


def main(argv=None) -> int:
    args = parse_args(argv)
    quiet_opencv()
    try:
        estimator = PoseEstimator(args.checkpoint_path, args.backend, net_height=args.height_size,
                                  threads=args.threads, track=args.video is not None and bool(args.track),
                                  smooth=bool(args.smooth))
    except BackendError as exc:
        report(str(exc))
        return 1
    payload = {'keypoint_names': keypoint_names(), 'model': args.checkpoint_path,
               'backend': estimator.backend_name, 'height_size': args.height_size}
    if args.images:
        payload['images'], failed = run_images(estimator, args.images, args)
    else:
        video, failed = run_video(estimator, args.video, args)
        payload.update(video or {'video': args.video, 'frames': []})
    if args.json:
        write_json(args.json, payload)
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main())
