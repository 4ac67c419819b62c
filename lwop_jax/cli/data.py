"""``lwop data``: check, preview and import training data (lwop_jax.data.check, .preview, .yolo)."""

from __future__ import annotations

import argparse
import pathlib
import sys

from lwop_jax import atomic
from lwop_jax.cli import common, train
from lwop_jax.data import check, coco, preview, yolo
from lwop_jax.errors import InputFileError
from lwop_jax.schema import load_schema
from lwop_jax.training import quiet

DESCRIPTION = """Checks, previews and imports training data (COCO person keypoints).

  lwop data check LABELS --images DIR [--keypoint-schema S] [--decode]
  lwop data preview LABELS --images DIR --out sheet.png [--count N] [--seed K] [--config NAME|FILE]
  lwop data import-yolo LABELS_DIR --images DIR --out labels.json (--keypoint-names A,B,... | --keypoint-schema S)

lwop data SUBCOMMAND --help describes each."""

CHECK = """Reports what a COCO person-keypoints file and its images hold for training, and what is wrong.

Images found, missing and unreadable; annotations usable under the original's rule (>= 5 labelled
keypoints among those the schema reads) and the training samples they make; labels per keypoint;
keypoints outside their image or box; visibility flags other than 0, 1, 2; duplicate ids; crowd regions;
keypoints the schema needs that the category lacks; images with no usable person. Exit status 1 when
there are errors (training would refuse the data or lose part of it), 0 with warnings only."""

PREVIEW = """Draws the first training samples, exactly as the network gets them, into one PNG contact sheet.

The samples come from the training pipeline itself with the config's settings (augmentation, crop size,
sigma, ...) and seed: the first --count samples a `lwop train` run with the same config and seed trains
on. Each tile: the crop, the heatmaps as a colour overlay, the PAFs as arrows, the cells the loss ignores
(crowd regions) hatched in red, the keypoint names at the heatmap peaks, and the image it came from.
--config.KEY=VALUE overrides a config key, as for lwop train."""

IMPORT_YOLO = """Converts Ultralytics YOLO-pose labels and their images into a COCO person-keypoints file.

LABELS_DIR holds one .txt per image (`class cx cy w h` then `x y v` or `x y` per keypoint, normalised),
mirroring --images (labels/train/a.txt for images/train/a.jpg). The columns are the keypoints named by
--keypoint-names, or those a keypoint schema reads (COCO's 17 in COCO's order for coco17 and coco18).
Bad lines are reported as FILE:LINE: problem and skipped; the exit status is 1 if there were any."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    verbs = parser.add_subparsers(dest='data_command', metavar='SUBCOMMAND', required=True)
    for name, description, add, handler in (
        ('check', CHECK, _add_check_arguments, run_check),
        ('preview', PREVIEW, _add_preview_arguments, run_preview),
        ('import-yolo', IMPORT_YOLO, _add_import_arguments, run_import_yolo),
    ):
        verb = verbs.add_parser(
            name,
            help=description.split('\n')[0],
            description=description,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        add(verb)
        # Also after the subcommand; SUPPRESS keeps a -v given before it (lwop data -v check ...).
        verb.add_argument('-v', '--verbose', action='store_true', default=argparse.SUPPRESS, help='informational logs')
        verb.set_defaults(handler=handler)


def _add_data_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('labels', type=pathlib.Path, help='COCO person-keypoints JSON file')
    parser.add_argument('--images', required=True, type=pathlib.Path, help="folder of the labels' images")


def _add_schema_argument(parser: argparse.ArgumentParser, help_text: str) -> None:
    parser.add_argument('--keypoint-schema', metavar='NAME|FILE', help=help_text)


def _add_check_arguments(parser: argparse.ArgumentParser) -> None:
    _add_data_arguments(parser)
    _add_schema_argument(parser, 'the schema to train (coco18, coco17, figure or a schema .json; default coco18)')
    parser.add_argument(
        '--decode',
        action='store_true',
        help='decode every image as training does (default: read its size from its header, ~100x faster; '
        'decoding also finds corrupt image data behind a sound header)',
    )


def _add_preview_arguments(parser: argparse.ArgumentParser) -> None:
    _add_data_arguments(parser)
    parser.add_argument('--out', required=True, type=pathlib.Path, help='the PNG contact sheet to write')
    _add_schema_argument(parser, "the schema to train (default: the config's keypoint_schema, coco18)")
    parser.add_argument('--count', type=int, default=8, help='samples on the sheet (default %(default)s)')
    parser.add_argument('--seed', type=int, help="the training seed (default: the config's, 0)")
    parser.add_argument('--columns', type=int, default=4, help='tiles per row (default %(default)s)')
    parser.add_argument(
        '--config',
        default='default',
        metavar='NAME|FILE',
        help="training config whose data settings apply (default: 'default', the original's: crop 368, "
        'rotation +-40 degrees)',
    )


def _add_import_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('labels', type=pathlib.Path, metavar='LABELS_DIR', help='folder of YOLO .txt label files')
    parser.add_argument('--images', required=True, type=pathlib.Path, help='the images folder the labels mirror')
    parser.add_argument('--out', required=True, type=pathlib.Path, help='the COCO JSON file to write')
    names = parser.add_mutually_exclusive_group(required=True)
    names.add_argument('--keypoint-names', metavar='A,B,...', help='the keypoints of a line, in order, by name')
    names.add_argument(
        '--keypoint-schema',
        metavar='NAME|FILE',
        help="the keypoints a schema reads (coco17, coco18: COCO's 17 in order)",
    )
    parser.add_argument('--class-id', type=int, help='import only the lines of this class (default: all)')
    parser.add_argument('--category-name', default='person', help='the COCO category (default %(default)s)')


def parse_extra(args: argparse.Namespace, extra: list[str]) -> None:
    """``lwop data preview`` takes --config.KEY=VALUE overrides, as lwop train; the others take no more."""
    if args.data_command == 'preview':
        train.parse_extra(args, extra)
    elif extra:
        raise ValueError(f'unrecognized arguments: {" ".join(extra)}')


def check_arguments(args: argparse.Namespace) -> str | None:
    if args.data_command == 'preview' and not 1 <= args.count <= 64:
        return f'--count {args.count}: draw 1 to 64 samples'
    if args.data_command == 'import-yolo' and args.keypoint_names is not None:
        names = [name.strip() for name in args.keypoint_names.split(',')]
        if not all(names) or len(set(names)) != len(names):
            return f'--keypoint-names {args.keypoint_names!r}: a comma-separated list of distinct names'
    return None


def run(args: argparse.Namespace) -> int:
    return args.handler(args)


def run_check(args: argparse.Namespace) -> int:
    schema = load_schema(args.keypoint_schema)
    report = check.check_dataset(args.labels, args.images, schema, decode=args.decode, progress=True)
    print('\n'.join(report.lines()))
    return 1 if report.errors else 0


def run_preview(args: argparse.Namespace) -> int:
    config = train.load_config(args.config, args.overrides)
    config.train_labels, config.train_images = str(args.labels), str(args.images)
    if args.keypoint_schema:
        config.keypoint_schema = args.keypoint_schema
    if args.seed is not None:
        config.seed = args.seed
    from lwop_jax.training import data as training_data  # jax, tensorflow (the [train] extra): not for --help

    quiet.start_tensorflow_quietly(args.verbose)
    schema = training_data.schema_of(config)
    training_set = coco.load_training_set(config.train_labels, config.train_images, config.label_net_input_size, schema)
    settings = training_data.pipeline_arguments(config) | {'schema': schema, 'layout': training_set.layout}
    settings |= {'batch_size': args.count, 'num_parallel_calls': 1}
    samples = preview.training_samples(training_set.labels, config.train_images, **settings)
    title = (
        f'{args.labels.name}: first {args.count} training samples, config {args.config}, seed {config.seed}, '
        f'schema {schema.name}, crop {config.crop_size}'
    )
    atomic.write_bytes(args.out, preview.encode_png(preview.contact_sheet(samples, schema, title, args.columns)))
    print(f'{args.out}: {args.count} samples of {len(training_set.labels)} ({title})')
    return 0


def run_import_yolo(args: argparse.Namespace) -> int:
    if args.keypoint_names is not None:
        names = tuple(name.strip() for name in args.keypoint_names.split(','))
    else:
        names = yolo.schema_dataset_keypoints(load_schema(args.keypoint_schema))
    result = yolo.import_yolo(
        args.labels, args.images, names, category_name=args.category_name, class_id=args.class_id, progress=True
    )
    for problem in result.problems:
        common.report_error(problem)
    if not result.coco['annotations']:
        raise InputFileError(f'{args.labels}: no label line could be imported; nothing written')
    atomic.write_json(args.out, result.coco)
    print(yolo.summary(result, args.out))
    return 1 if result.problems else 0


def main(argv: list[str] | None = None) -> int:
    return common.main(sys.modules[__name__], argv)
