"""``lwop synthetic``: write a synthetic COCO person-keypoints data set (lwop_jax.synthetic)."""

from __future__ import annotations

import argparse
import pathlib
import sys

from lwop_jax import synthetic
from lwop_jax.cli import common
from lwop_jax.synthetic.dataset_skeleton import DEFAULT_SKELETON, shipped_skeletons
from lwop_jax.synthetic.drawing import CLUTTER_SHAPES
from lwop_jax.synthetic.scene import CROWD_PROBABILITY, MAX_PERSON_HEIGHT_TO_IMAGE, MIN_PERSON_HEIGHT

DESCRIPTION = """Generate a synthetic COCO person-keypoints data set.

--skeleton chooses the category and its keypoints (names, order, body points): COCO's 17 by default, or
a shipped or own dataset skeleton (lwop_jax/synthetic/dataset_skeleton.py describes the JSON file). The
images do not depend on it."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('--out', required=True, type=pathlib.Path, help='output folder')
    parser.add_argument('--num-images', required=True, type=int)
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--width', type=int, default=640)
    parser.add_argument('--height', type=int, default=480)
    parser.add_argument('--max-people', type=int, default=4)
    parser.add_argument('--crowd-probability', type=float, default=CROWD_PROBABILITY)
    parser.add_argument('--min-person-height', type=float, default=MIN_PERSON_HEIGHT, help='pixels')
    parser.add_argument(
        '--max-person-height', type=float, default=MAX_PERSON_HEIGHT_TO_IMAGE, help='fraction of the image height'
    )
    parser.add_argument('--people-inside', action='store_true', help='no person cut by the image border')
    parser.add_argument(
        '--clutter-shapes',
        type=int,
        nargs=2,
        default=CLUTTER_SHAPES,
        metavar=('FEWEST', 'MOST'),
        help='random background shapes per image',
    )
    parser.add_argument('--format', choices=('jpg', 'png'), default='jpg')
    parser.add_argument('--workers', type=int, default=1, help='rendering processes')
    parser.add_argument(
        '--skeleton',
        default=DEFAULT_SKELETON,
        metavar='NAME|FILE',
        help=f'dataset skeleton: shipped {", ".join(shipped_skeletons())} or a .json file (default: %(default)s)',
    )


def check_arguments(args: argparse.Namespace) -> str | None:
    try:
        synthetic.check_options(
            args.format,
            args.max_people,
            tuple(args.clutter_shapes),
            args.min_person_height,
            args.max_person_height,
            args.height,
        )
    except ValueError as exc:
        return str(exc)
    return None


def run(args: argparse.Namespace) -> int:
    path = synthetic.generate_dataset(
        args.out,
        args.num_images,
        args.seed,
        args.width,
        args.height,
        args.max_people,
        args.crowd_probability,
        args.format,
        args.workers,
        progress=True,
        min_person_height=args.min_person_height,
        max_person_height=args.max_person_height,
        people_inside=args.people_inside,
        clutter_shapes=tuple(args.clutter_shapes),
        skeleton=args.skeleton,
    )
    print(path)
    return 0


def main(argv: list[str] | None = None) -> int:
    return common.main(sys.modules[__name__], argv)
