"""``lwop convert`` / ``convert_torch_weights.py``: a checkpoint to lwop_jax (orbax), ONNX and OpenVINO IR."""

from __future__ import annotations

import argparse
import pathlib
import sys
import tempfile

from lwop_jax import atomic
from lwop_jax.checkpoints import metadata, openvino_ir
from lwop_jax.cli import common
from lwop_jax.errors import InputFileError
from lwop_jax.evaluation import gate
from lwop_jax.schema import load_schema

DESCRIPTION = """Converts a Lightweight OpenPose checkpoint to lwop_jax (orbax), ONNX and OpenVINO IR (no PyTorch).

  lwop convert checkpoint_iter_370000.pth --output runs/coco-370k \\
      --onnx runs/coco-370k/lwop.onnx --openvino runs/coco-370k/openvino

The input is a torch checkpoint (legacy or zip serialization; read without executing any pickled code)
or an orbax checkpoint folder written by this tool or by train.py (then only the exports are made).
``--from-mobilenet`` reads a MobileNet-v1 ImageNet checkpoint (``mobilenet_sgd_68.848.pth.tar``) into
the backbone of a freshly initialised network, as the original ``train.py --from-mobilenet``. An fp32 .onnx
export is also accepted as the input, to make other precisions of it.

--to-schema transfers a trained model into another keypoint schema: heatmap channels map by the dataset
keypoint each reads, limbs by their two ends (a reversed limb negated); --keypoint-match pairs keypoints
by name where the two schemas read differently named dataset keypoints:

  lwop convert coco-370k --output runs/figure --to-schema figure \\
      --keypoint-match shoulder_r=r_sho --keypoint-match shoulder_l=l_sho

--precision (fp32 default) tags the exports; bf16 keeps float32 weights, for bf16 compute where the runtime
and CPU have it (OpenVINO); int8 quantizes after training (ONNX Runtime QDQ for --onnx, NNCF for --openvino)
on --calibration-images, then compares int8 with fp32 on those images and writes nothing when they differ
too much (--min-agreement, and --max-ap-drop with --calibration-labels):

  lwop convert model.pth --onnx int8.onnx --openvino int8_ir --precision int8 --calibration-images photos/
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('checkpoint', help='torch .pth / .pth.tar file, or an lwop_jax orbax checkpoint folder')
    parser.add_argument('--output', help='write an orbax checkpoint into this folder')
    parser.add_argument('--onnx', help='also export ONNX to this file')
    parser.add_argument('--openvino', help='also export OpenVINO IR into this folder')
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
    parser.add_argument(
        '--to-schema',
        metavar='NAME|FILE',
        help='transfer the model into this keypoint schema (coco18, coco17, figure or a schema .json): heads '
        'mapped by the keypoints and limbs the two share, the rest initialised fresh',
    )
    parser.add_argument(
        '--keypoint-match',
        action='append',
        default=[],
        type=keypoint_match,
        metavar='YOURS=SOURCE',
        help="with --to-schema, also map keypoint YOURS from the checkpoint's keypoint SOURCE, by the two "
        "schemas' names, where the two read differently named dataset keypoints (repeatable; as training's "
        'init_keypoint_matches)',
    )
    parser.add_argument('--seed', type=int, default=0, help='initialisation seed for --from-mobilenet and --to-schema')
    add_precision_arguments(parser)


def add_precision_arguments(parser: argparse.ArgumentParser) -> None:
    """--precision and the int8 calibration and accuracy-gate flags."""
    common.add_precision_argument(
        parser,
        'precision of the exports (default %(default)s): bf16 tags float32 weights for bf16 compute (OpenVINO), '
        'int8 quantizes on --calibration-images',
        default='fp32',
    )
    group = parser.add_argument_group('int8 calibration and accuracy gate')
    group.add_argument('--calibration-images', metavar='DIR', help='folder of images to calibrate int8 on')
    group.add_argument(
        '--calibration-labels', metavar='JSON', help='COCO keypoints labels of those images: also compare AP'
    )
    group.add_argument(
        '--max-calibration-images',
        type=int,
        default=gate.MAX_CALIBRATION_IMAGES,
        help='use at most this many calibration images (default %(default)s)',
    )
    group.add_argument(
        '--min-agreement',
        type=float,
        default=gate.MIN_AGREEMENT,
        help='refuse an int8 model whose keypoint agreement (mean OKS against fp32 poses) is below this '
        '(default %(default)s)',
    )
    group.add_argument(
        '--max-ap-drop',
        type=float,
        default=gate.MAX_AP_DROP,
        help='with --calibration-labels, refuse an int8 model losing more AP than this (default %(default)s)',
    )
    group.add_argument(
        '--keep-fp32',
        default='last-heads',
        metavar='LAYERS',
        help='layers left in float: last-heads (default), all-heads, none, or comma-separated node names',
    )
    group.add_argument('--threads', type=int, help='CPU threads for calibration and the gate (default: all)')


def keypoint_match(text: str) -> tuple[str, str]:
    """``YOURS=SOURCE`` as the (target keypoint, source keypoint) pair of :func:`transfer.schema_mapping`."""
    yours, equals, source = text.partition('=')
    if not (equals and yours.strip() and source.strip()):
        raise argparse.ArgumentTypeError(f'{text!r} is not YOURS=SOURCE (two keypoint names)')
    return yours.strip(), source.strip()


def is_onnx(path) -> bool:
    return str(path).lower().endswith('.onnx')


def check_arguments(args: argparse.Namespace) -> str | None:
    if args.keypoint_match and not args.to_schema:
        return '--keypoint-match is for --to-schema'
    if args.to_schema and (args.from_mobilenet or is_onnx(args.checkpoint)):
        return '--to-schema needs a trained checkpoint (.pth, orbax folder, published name), not MobileNet or .onnx'
    if is_onnx(args.checkpoint):
        if args.output or args.from_mobilenet:
            return 'an .onnx input converts to other precisions only: --output and --from-mobilenet need a checkpoint'
        if not (args.onnx or args.openvino):
            return 'an .onnx input needs --onnx FILE or --openvino DIR'
    elif not (args.output or args.onnx or args.openvino):
        return 'nothing to write: give --output DIR (orbax), --onnx FILE or --openvino DIR'
    if args.precision != 'fp32' and not (args.onnx or args.openvino):
        return '--precision applies to the exports: give --onnx FILE or --openvino DIR'
    if args.precision != 'int8' and (args.calibration_images or args.calibration_labels):
        return '--calibration-images and --calibration-labels are for --precision int8'
    return None


def calibration(args: argparse.Namespace):
    """The int8 calibration set, checked before any conversion runs (None for fp32 and bf16)."""
    if args.precision != 'int8':
        return None
    if not args.calibration_images:
        target = args.onnx or args.openvino
        raise InputFileError(f'{target}: --precision int8 needs --calibration-images DIR (images like those to come)')
    images = gate.calibration_set(args.calibration_images, args.calibration_labels, args.max_calibration_images)
    print(f'calibration: {len(images.images)} images from {args.calibration_images}')
    return images


def quantize(args: argparse.Namespace, fp32_onnx, images) -> None:
    """The int8 exports of ``fp32_onnx``, each through the accuracy gate."""
    for runtime, output in (('onnxruntime', args.onnx), ('openvino', args.openvino)):
        if output:
            path = gate.quantize_with_gate(
                fp32_onnx,
                runtime,
                output,
                images,
                keep_fp32=args.keep_fp32,
                min_agreement=args.min_agreement,
                max_ap_drop=args.max_ap_drop,
                threads=args.threads,
            )
            print(f'{"ONNX" if runtime == "onnxruntime" else "OpenVINO IR"} (int8): {path}')


def run(args: argparse.Namespace) -> int:
    images = calibration(args)
    if is_onnx(args.checkpoint):
        return export_graph(args, pathlib.Path(args.checkpoint), images)

    # jax, flax, orbax and jax2onnx (the [export] extra) load only when a conversion runs, not for --help.
    from lwop_jax.checkpoints import export, orbax_io, torch_names
    from lwop_jax.model.variables import model_summary

    if args.from_mobilenet:
        from flax import nnx  # the [jax] extra, as above

        from lwop_jax.model.posenet import PoseNet

        model = PoseNet(num_refinement_stages=args.num_refinement_stages or 1, rngs=nnx.Rngs(args.seed))
        print(torch_names.init_backbone_from_mobilenet(model, args.checkpoint))
        model.set_training(False)
    elif args.to_schema:
        model = to_schema(args)
    else:
        model = orbax_io.load_any(args.checkpoint, num_refinement_stages=args.num_refinement_stages)
    print(model_summary(model))
    if args.output:
        print(f'orbax checkpoint: {orbax_io.save_model(model, args.output, source=str(args.checkpoint))}')
    if not (args.onnx or args.openvino):
        return 0
    with tempfile.TemporaryDirectory(prefix='lwop_export_') as work:
        # int8 is quantized from an fp32 export; --openvino alone converts a temporary ONNX.
        direct = args.onnx and args.precision != 'int8'
        onnx_path = args.onnx if direct else pathlib.Path(work) / pathlib.Path(args.onnx or 'lwop.onnx').name
        precision = 'fp32' if args.precision == 'int8' else args.precision
        kwargs = dict(input_size=args.input_size, dynamic=args.input_size is None, precision=precision)
        path = export.export_onnx(model, onnx_path, **kwargs)
        if direct:
            print(f'ONNX ({precision}): {path}')
        return export_graph(args, path, images, written=direct)


def to_schema(args: argparse.Namespace):
    """The checkpoint (a file, an orbax folder or a published model's name) transferred into --to-schema."""
    from lwop_jax.checkpoints import transfer  # jax and flax, as run's other conversions

    schema = load_schema(args.to_schema)  # a bad schema file: one line, before any weight is read
    model, report = transfer.transferred_model(
        args.checkpoint,
        schema,
        seed=args.seed,
        num_refinement_stages=args.num_refinement_stages,
        matches=args.keypoint_match,
    )
    transfer.announce(report)
    return model


def export_graph(args: argparse.Namespace, fp32_onnx: pathlib.Path, images, written: bool = False) -> int:
    """The exports made from an ONNX file: int8 ones, or the ONNX copy and the IR at fp32 / bf16."""
    import onnx  # the [export] extra: reading and tagging ONNX files

    proto = onnx.load(str(fp32_onnx))
    if metadata.onnx_precision({p.key: p.value for p in proto.metadata_props}) == 'int8':
        raise InputFileError(f'{fp32_onnx}: already an int8 model; convert its fp32 export instead')
    if images is not None:
        quantize(args, fp32_onnx, images)
        return 0
    if args.onnx and not written:
        atomic.write_bytes(args.onnx, metadata.tag_onnx(proto, args.precision).SerializeToString())
        print(f'ONNX ({args.precision}): {args.onnx}')
    if args.openvino:
        xml = openvino_ir.export_openvino(fp32_onnx, args.openvino, precision=args.precision)
        print(f'OpenVINO IR ({args.precision}): {xml}')
    return 0


def main(argv: list[str] | None = None) -> int:
    return common.main(sys.modules[__name__], argv)
