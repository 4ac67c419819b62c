"""``lwop convert`` / ``convert_torch_weights.py``: a checkpoint to lwop_jax (orbax), ONNX and OpenVINO IR."""

from __future__ import annotations

import argparse
import os
import sys

from lwop_jax.cli import common

DESCRIPTION = """Converts a Lightweight OpenPose checkpoint to lwop_jax (orbax), ONNX and OpenVINO IR (no PyTorch).

  lwop convert checkpoint_iter_370000.pth --output runs/coco-370k \\
      --onnx runs/coco-370k/lwop.onnx --openvino runs/coco-370k/openvino

The input is a torch checkpoint (legacy or zip serialization; read without executing any pickled code)
or an orbax checkpoint folder written by this tool or by train.py (then only the exports are made).
``--from-mobilenet`` reads a MobileNet-v1 ImageNet checkpoint (``mobilenet_sgd_68.848.pth.tar``) into
the backbone of a freshly initialised network, as the original ``train.py --from-mobilenet``.
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('checkpoint', help='torch .pth / .pth.tar file, or an lwop_jax orbax checkpoint folder')
    parser.add_argument('--output', help='folder for the orbax checkpoint (required for torch inputs)')
    parser.add_argument('--onnx', help='also export ONNX to this file')
    parser.add_argument('--openvino', help='also export OpenVINO IR into this folder (needs --onnx)')
    parser.add_argument(
        '--input-size',
        type=int,
        nargs=2,
        metavar=('H', 'W'),
        default=None,
        help='fix the exported input size (default: dynamic batch, height and width)',
    )
    parser.add_argument(
        '--num-refinement-stages',
        type=int,
        default=None,
        help='keep this many refinement stages (default: all in the file)',
    )
    parser.add_argument(
        '--from-mobilenet',
        action='store_true',
        help='the checkpoint is MobileNet-v1 ImageNet weights: initialise the backbone only',
    )
    parser.add_argument('--seed', type=int, default=0, help='initialisation seed for --from-mobilenet')


def check_arguments(args: argparse.Namespace) -> str | None:
    if args.openvino and not args.onnx:
        return '--openvino converts the ONNX export: give --onnx FILE too'
    if not args.output and not os.path.isdir(args.checkpoint):
        return '--output DIR is required to convert a torch checkpoint'
    return None


def run(args: argparse.Namespace) -> int:
    # jax, flax, orbax and jax2onnx (the [export] extra) load only when a conversion runs, not for --help.
    from lwop_jax.checkpoints import export, orbax_io, torch_names
    from lwop_jax.model.variables import model_summary

    if args.from_mobilenet:
        from flax import nnx  # the [jax] extra, as above

        from lwop_jax.model.posenet import PoseNet

        model = PoseNet(num_refinement_stages=args.num_refinement_stages or 1, rngs=nnx.Rngs(args.seed))
        print(torch_names.init_backbone_from_mobilenet(model, args.checkpoint))
        model.set_training(False)
    else:
        model = orbax_io.load_any(args.checkpoint, num_refinement_stages=args.num_refinement_stages)
    print(model_summary(model))
    if args.output:
        print(f'orbax checkpoint: {orbax_io.save_model(model, args.output, source=str(args.checkpoint))}')
    if args.onnx:
        path = export.export_onnx(model, args.onnx, input_size=args.input_size, dynamic=args.input_size is None)
        print(f'ONNX: {path}')
    if args.openvino:
        print(f'OpenVINO IR: {export.export_openvino(args.onnx, args.openvino)}')
    return 0


def main(argv: list[str] | None = None) -> int:
    return common.main(sys.modules[__name__], argv)
