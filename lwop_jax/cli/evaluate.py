"""``lwop evaluate`` / ``evaluate.py``: COCO keypoint AP of a model, the original val.py on any backend."""

from __future__ import annotations

import argparse
import sys

from lwop_jax import atomic
from lwop_jax.cli import common
from lwop_jax.evaluation import coco_eval, subsets
from lwop_jax.evaluation.ceiling import ground_truth_ceiling
from lwop_jax.evaluation.compare import compare_backends, side_by_side
from lwop_jax.inference.backends import BACKENDS, load_backend

DESCRIPTION = """COCO keypoint evaluation of a Lightweight OpenPose model (the original val.py, any backend).

  lwop evaluate --labels person_keypoints_val2017.json --images-folder val2017 \\
      --checkpoint-path checkpoint_iter_370000.pth [--backend onnxruntime] [--multiscale] [--flip]

The checkpoint may be a torch .pth, an lwop_jax orbax folder, an .onnx file or OpenVINO .xml IR; the
backend defaults by file type (jax for checkpoints, onnxruntime for .onnx, openvino for .xml). The
detections (COCO results format) and the stats go to JSON files, each written atomically.

--compare scores a second model file on the same images, side by side (single scale, no flip), with the
people each finds and their keypoint agreement (mean OKS of the second's poses against the first's):

  lwop evaluate --labels ... --images-folder ... --checkpoint-path fp32.onnx --compare int8.onnx
  lwop evaluate --labels ... --images-folder ... --checkpoint-path lwop.xml --compare lwop.xml --compare-precision bf16
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('--labels', required=True, help='COCO person keypoints annotation JSON')
    parser.add_argument('--images-folder', help='folder with the images the labels name')
    common.add_model_source_arguments(parser)
    parser.add_argument(
        '--make-subset',
        type=int,
        metavar='N',
        help='only write a random N-image subset of --labels to --output-name and exit '
        '(the original make_val_subset.py); --seed picks the images',
    )
    parser.add_argument('--seed', type=int, default=0, help='seed for --make-subset')
    parser.add_argument('--output-name', default='detections.json', help='detections JSON (default %(default)s)')
    parser.add_argument('--stats-json', help='also write the 10 stats and the run settings to this JSON')
    parser.add_argument(
        '--multiscale', action='store_true', help=f'average the maps over scales {list(coco_eval.MULTISCALE)}'
    )
    parser.add_argument('--flip', action='store_true', help='also run the mirrored image and average (TTA)')
    parser.add_argument(
        '--ground-truth-ceiling',
        action='store_true',
        help='also report the AP of perfect stride-8 maps on the same images (the ground truth '
        'rendered as training targets and decoded): what the stride, decoder and OKS leave',
    )
    parser.add_argument('--visualize', metavar='DIR', help='save every image with its detected poses in DIR')
    parser.add_argument('--max-images', type=int, help='evaluate only the first N images of the labels')
    parser.add_argument(
        '--skip-missing',
        action='store_true',
        help='evaluate the images that exist when some are missing (default: stop)',
    )
    parser.add_argument('--no-progress', action='store_true', help='no progress bar')
    parser.add_argument('--compare', metavar='MODEL', help='also score this model file, side by side')
    parser.add_argument(
        '--compare-backend', choices=sorted(BACKENDS), help='runtime of --compare (default: by its file type)'
    )
    common.add_precision_argument(parser, 'precision of --compare (default: its file tag)', dest='compare_precision')


def check_arguments(args: argparse.Namespace) -> str | None:
    """What is wrong with a combination of arguments, or None."""
    if args.max_images is not None and args.max_images < 1:
        return '--max-images must be at least 1'
    if args.make_subset is None and not (args.images_folder and args.checkpoint_path):
        return '--images-folder and --checkpoint-path are required to evaluate'
    if args.compare and (args.multiscale or args.flip or args.visualize):
        return '--compare runs single scale without flip or --visualize'
    return None


def print_result(result) -> None:
    """The pycocotools table, then the skipped files and notes (on stderr)."""
    print(result.summary, end='')
    for label, paths in (('missing', result.missing), ('unreadable', result.unreadable)):
        if paths:
            print(f'warning: skipped {len(paths)} {label} image(s): {", ".join(paths)}', file=sys.stderr)
    if result.note:
        print(f'note: {result.note}', file=sys.stderr)


def make_subset(args: argparse.Namespace) -> int:
    subset = subsets.make_val_subset(args.labels, args.output_name, args.make_subset, args.seed)
    print(f'{args.output_name}: {len(subset["images"])} images, {len(subset["annotations"])} annotations')
    return 0


def run(args: argparse.Namespace) -> int:
    if args.make_subset is not None:
        return make_subset(args)
    scales = coco_eval.MULTISCALE if args.multiscale else (1,)
    # Labels and images are checked first: opening the model may take a conversion.
    dataset = coco_eval.load_annotations(args.labels)
    present, _ = coco_eval.locate_images(
        dataset, args.images_folder, max_images=args.max_images, skip_missing=args.skip_missing
    )
    backend = load_backend(
        args.checkpoint_path,
        args.backend,
        threads=args.threads,
        num_refinement_stages=args.num_refinement_stages,
        precision=args.precision,
        keypoint_schema=args.keypoint_schema,
    )
    # pycocotools (the [eval] extra) scores at the end: a missing one is said before the model runs on every image.
    import pycocotools  # noqa: F401

    if args.compare:
        return compare(args, backend, dataset, present)
    result = coco_eval.evaluate_backend(
        backend,
        dataset,
        args.images_folder,
        scales=scales,
        flip=args.flip,
        max_images=args.max_images,
        progress=not args.no_progress,
        visualize_dir=args.visualize,
        skip_missing=args.skip_missing,
    )
    atomic.write_json(args.output_name, result.detections)
    if args.stats_json:
        atomic.write_json(
            args.stats_json,
            coco_eval.stats_record(
                result,
                checkpoint=args.checkpoint_path,
                backend=backend.name,
                precision=backend.precision,
                labels=args.labels,
                scales=scales,
                flip=args.flip,
            ),
            indent=1,
        )
    ceiling = (
        ground_truth_ceiling(dataset, args.images_folder, image_ids=result.image_ids, schema=backend.keypoint_schema)
        if args.ground_truth_ceiling
        else None
    )
    print_result(result)
    if ceiling is not None:
        print(
            f'ground-truth ceiling (perfect stride-8 maps, single scale, same {len(ceiling.image_ids)} images): '
            f'AP {ceiling.stats["AP"]:.3f}, AP50 {ceiling.stats["AP50"]:.3f}, AR {ceiling.stats["AR"]:.3f}'
        )
    return 0


def compare(args: argparse.Namespace, backend, dataset, present) -> int:
    """--compare: both models on the same images (``present``: (image entry, path) pairs), the 10 stats side by
    side and their agreement."""
    other = load_backend(
        args.compare,
        args.compare_backend,
        threads=args.threads,
        num_refinement_stages=args.num_refinement_stages,
        precision=args.compare_precision,
        keypoint_schema=args.keypoint_schema,
    )
    images = [(entry['id'], path) for entry, path in present]
    comparison = compare_backends(backend, other, images, dataset, progress=not args.no_progress)
    print(f'A: {args.checkpoint_path} ({backend.name}, {backend.precision})')
    print(f'B: {args.compare} ({other.name}, {other.precision})')
    print(side_by_side(comparison, 'A', 'B'))
    if comparison.unreadable:
        print(f'warning: skipped {len(comparison.unreadable)} unreadable image(s)', file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    return common.main(sys.modules[__name__], argv)
