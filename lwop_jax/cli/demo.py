"""``lwop demo``: the offline end-to-end demo (synthetic data, training, AP, ONNX, infer)."""

from __future__ import annotations

import argparse
import pathlib
import sys

from lwop_jax.cli import common
from lwop_jax.demo.schemas import data_skeleton, demo_schemas
from lwop_jax.schema import DEFAULT_SCHEMA
from lwop_jax.training import host_heap, quiet

DESCRIPTION = """Offline end-to-end demo: synthetic people -> CPU training -> COCO AP on held-out images ->
ONNX export -> infer with ONNX Runtime -> drawn images and JSON in --out. Nothing is downloaded; the
default fits in 10 minutes on 2 CPU cores. --quick is the short smoke version (CI); its AP means nothing.
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('--out', type=pathlib.Path, default=pathlib.Path('runs/demo'), help='output folder')
    parser.add_argument(
        '--time-budget',
        type=float,
        help="seconds of training, compilation included (default: the demo config's, "
        'so that the whole demo fits in 10 minutes on 2 CPU cores)',
    )
    parser.add_argument(
        '--quick', action='store_true', help='the short CI version: same stages, tiny data sets, a few iterations'
    )
    parser.add_argument('--seed', type=int, default=0, help='data sets, initialisation and data order')
    parser.add_argument(
        '--keypoint-schema',
        default=DEFAULT_SCHEMA,
        metavar='NAME',
        help=f'the keypoints trained: {", ".join(demo_schemas())} (default: %(default)s); coco18 and coco17 train '
        "on COCO's 17 synthetic keypoints, figure on the synthetic figure skeleton (lwop synthetic --skeleton figure)",
    )
    parser.add_argument(
        '--figure',
        type=pathlib.Path,
        help='also save the result picture here (<= 640 px wide JPEG), e.g. docs/demo_result.jpg',
    )


def check_arguments(args: argparse.Namespace) -> str | None:
    if args.time_budget is not None and args.time_budget < 0:
        return '--time-budget must be >= 0'
    return None


def run(args: argparse.Namespace) -> int:
    data_skeleton(args.keypoint_schema)  # an unknown schema: one line, before JAX starts
    # glibc keeps freed memory (~15 % faster CPU steps) only if told before JAX starts its threads.
    host_heap.keep_freed_memory()
    quiet.start_tensorflow_quietly(args.verbose)
    from lwop_jax.demo.run import run_demo  # jax, tensorflow (the [train] extra): not for --help

    run_demo(
        args.out,
        quick=args.quick,
        time_budget=args.time_budget,
        seed=args.seed,
        figure=args.figure,
        keypoint_schema=args.keypoint_schema,
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    return common.main(sys.modules[__name__], argv)
