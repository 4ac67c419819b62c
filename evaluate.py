r"""COCO keypoint evaluation of a Lightweight OpenPose model (the original val.py, any backend).

  python evaluate.py --labels person_keypoints_val2017.json --images-folder val2017 \
      --checkpoint-path checkpoint_iter_370000.pth [--backend onnxruntime] [--multiscale] [--flip]

The checkpoint may be a torch .pth, an lwop_jax orbax folder, an .onnx file or OpenVINO .xml IR; the
backend defaults by file type (jax for checkpoints, onnxruntime for .onnx, openvino for .xml). The
detections (COCO results format) and the stats go to JSON files, each written atomically.
"""
import argparse
import sys

from lwop_jax import atomic, coco_eval, runtime, torch_checkpoint
from lwop_jax.errors import WeightsError


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--labels', required=True, help='COCO person keypoints annotation JSON')
    parser.add_argument('--images-folder', help='folder with the images the labels name')
    parser.add_argument('--checkpoint-path', help='.pth, orbax folder, .onnx, .xml, or a published model '
                                                  'by name (coco-370k)')
    parser.add_argument('--make-subset', type=int, metavar='N',
                        help='only write a random N-image subset of --labels to --output-name and exit '
                             '(the original make_val_subset.py); --seed picks the images')
    parser.add_argument('--seed', type=int, default=0, help='seed for --make-subset')
    parser.add_argument('--output-name', default='detections.json', help='detections JSON (default %(default)s)')
    parser.add_argument('--stats-json', help='also write the 10 stats and the run settings to this JSON')
    parser.add_argument('--backend', choices=sorted(runtime.BACKENDS), help='default: by checkpoint type')
    parser.add_argument('--multiscale', action='store_true',
                        help=f'average the maps over scales {list(coco_eval.MULTISCALE)}')
    parser.add_argument('--flip', action='store_true', help='also run the mirrored image and average (TTA)')
    parser.add_argument('--ground-truth-ceiling', action='store_true',
                        help='also report the AP of perfect stride-8 maps on the same images (the ground truth '
                             'rendered as training targets and decoded): what the stride, decoder and OKS leave')
    parser.add_argument('--visualize', metavar='DIR', help='save every image with its detected poses in DIR')
    parser.add_argument('--max-images', type=int, help='evaluate only the first N images of the labels')
    parser.add_argument('--skip-missing', action='store_true',
                        help='evaluate the images that exist when some are missing (default: stop)')
    parser.add_argument('--threads', type=int, help='CPU threads for onnxruntime / openvino')
    parser.add_argument('--num-refinement-stages', type=int, help='keep this many refinement stages')
    parser.add_argument('--no-progress', action='store_true', help='no progress bar')
    args = parser.parse_args(argv)
    if args.max_images is not None and args.max_images < 1:
        parser.error('--max-images must be at least 1')
    if args.make_subset is None and not (args.images_folder and args.checkpoint_path):
        parser.error('--images-folder and --checkpoint-path are required to evaluate')
    return args


def report(result):
    """The pycocotools table, then the skipped files and notes (on stderr)."""
    print(result.summary, end='')
    for label, paths in (('missing', result.missing), ('unreadable', result.unreadable)):
        if paths:
            print(f'warning: skipped {len(paths)} {label} image(s): {", ".join(paths)}', file=sys.stderr)
    if result.note:
        print(f'note: {result.note}', file=sys.stderr)


# Errors that mean bad input: reported in one line, exit code 1.
EXPECTED_ERRORS = (coco_eval.EvalInputError, runtime.BackendError, torch_checkpoint.CheckpointError, WeightsError,
                   OSError)


def main(argv=None):
    args = parse_args(argv)
    if args.make_subset is not None:
        try:
            subset = coco_eval.make_val_subset(args.labels, args.output_name, args.make_subset, args.seed)
        except EXPECTED_ERRORS as exc:
            print(f'error: {exc}', file=sys.stderr)
            return 1
        print(f'{args.output_name}: {len(subset["images"])} images, {len(subset["annotations"])} annotations')
        return 0
    scales = coco_eval.MULTISCALE if args.multiscale else (1,)
    try:
        # Labels and images are checked first: opening the model may take a conversion.
        dataset = coco_eval.load_annotations(args.labels)
        coco_eval.locate_images(dataset, args.images_folder, max_images=args.max_images,
                                skip_missing=args.skip_missing)
        backend = runtime.load_backend(args.checkpoint_path, args.backend, threads=args.threads,
                                       num_refinement_stages=args.num_refinement_stages)
        result = coco_eval.evaluate_backend(
            backend, dataset, args.images_folder,
            scales=scales, flip=args.flip, max_images=args.max_images, progress=not args.no_progress,
            visualize_dir=args.visualize, skip_missing=args.skip_missing)
        atomic.write_json(args.output_name, result.detections)
        if args.stats_json:
            atomic.write_json(args.stats_json, coco_eval.stats_record(
                result, checkpoint=args.checkpoint_path, backend=backend.name, labels=args.labels,
                scales=scales, flip=args.flip), indent=1)
        ceiling = (coco_eval.ground_truth_ceiling(dataset, args.images_folder, image_ids=result.image_ids)
                   if args.ground_truth_ceiling else None)
    except EXPECTED_ERRORS as exc:
        print(f'error: {exc}', file=sys.stderr)
        return 1
    report(result)
    if ceiling is not None:
        print(f'ground-truth ceiling (perfect stride-8 maps, single scale, same {len(ceiling.image_ids)} images): '
              f'AP {ceiling.stats["AP"]:.3f}, AP50 {ceiling.stats["AP50"]:.3f}, AR {ceiling.stats["AR"]:.3f}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
