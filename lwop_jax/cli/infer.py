"""``lwop infer`` / ``infer.py``: people in images or a video, the original demo.py made scriptable."""

from __future__ import annotations

import argparse
import pathlib
import sys

from lwop_jax.atomic import write_json
from lwop_jax.cli import common
from lwop_jax.inference import runs
from lwop_jax.inference.estimator import PoseEstimator

DESCRIPTION = """Finds people in images or a video: the original demo.py, scriptable.

  lwop infer --checkpoint-path model.onnx --images photos/ 'more/*.jpg' --json poses.json
  lwop infer --checkpoint-path model.pth --video clip.mp4 --output-dir out/ --json poses.json

The original's flags work as before (--checkpoint-path, --height-size, --images, --video,
--track, --smooth, --cpu). --images takes files, folders (their images, sorted) and globs.
--output-dir gets the drawn images (a video gets an annotated mp4), --json the keypoints in image
pixels (a missing keypoint is [-1, -1, 0]). Bad inputs are reported on stderr, one line each,
and skipped; the exit status is 1 when anything failed. Images are independent (no track ids);
a video is tracked (--track 1, the default) and smoothed (--smooth 1).

Reading and pre-processing the next frame (or image), and decoding and drawing the previous one,
overlap the network (--no-pipeline: one after the other; the results are the same). --batch-size N
sends up to N images of a folder whose network inputs share a padded size through the network
together (keypoints as with 1 up to float rounding).
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    common.add_model_source_arguments(parser, default='coco-370k')
    parser.add_argument('--height-size', type=int, default=256, help='network input height')
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument('--images', nargs='+', help='image files, folders or globs')
    source.add_argument('--video', help='video file or camera index')
    parser.add_argument(
        '--track', type=int, default=1, help='track people ids in a video (1/0); images are independent'
    )
    parser.add_argument('--smooth', type=int, default=1, help='smooth tracked keypoints (1/0)')
    parser.add_argument(
        '--cpu', action='store_true', help='accepted for compatibility; the CPU runtimes run on the CPU anyway'
    )
    parser.add_argument('--output-dir', type=pathlib.Path, help='write drawn images / annotated mp4')
    parser.add_argument('--json', type=pathlib.Path, help='write the keypoints to this JSON file')
    parser.add_argument('--show', action='store_true', help='show results in a window (Esc stops)')
    parser.add_argument(
        '--batch-size',
        type=int,
        default=1,
        help='--images: up to this many images whose network inputs share a padded size go through the '
        'network together (default 1)',
    )
    parser.add_argument(
        '--no-pipeline',
        dest='pipeline',
        action='store_false',
        help='read, run the network and decode one after the other instead of overlapping them (debugging; '
        'the results are the same)',
    )


def check_arguments(args: argparse.Namespace) -> str | None:
    if args.batch_size < 1:
        return f'--batch-size must be at least 1, got {args.batch_size}'
    if args.video is not None and args.batch_size != 1:
        return '--batch-size applies to --images: video frames go through the network one by one, in order'
    return None


def run(args: argparse.Namespace) -> int:
    runs.quiet_opencv()
    estimator = PoseEstimator(
        args.checkpoint_path,
        args.backend,
        net_height=args.height_size,
        threads=args.threads,
        track=args.video is not None and bool(args.track),
        smooth=bool(args.smooth),
        num_refinement_stages=args.num_refinement_stages,
        precision=args.precision,
        keypoint_schema=args.keypoint_schema,
    )
    print(f'model {args.checkpoint_path}: {estimator.backend_name}, {estimator.precision}, {estimator.schema.name}')
    payload = runs.json_header(estimator, args.checkpoint_path, args.height_size)
    if args.images:
        payload['images'], failed = runs.run_images(
            estimator, args.images, args.output_dir, args.show, batch_size=args.batch_size, pipeline=args.pipeline
        )
    else:
        video, failed = runs.run_video(estimator, args.video, args.output_dir, args.show, pipeline=args.pipeline)
        payload.update(video or {'video': args.video, 'frames': []})
    if args.json:
        write_json(args.json, payload, indent=1)
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    return common.main(sys.modules[__name__], argv)
