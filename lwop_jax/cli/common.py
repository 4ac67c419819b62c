"""What every command shares: the model-source flags, verbosity, and one-line errors.

A command module (``lwop_jax/cli/<verb>.py``) defines ``DESCRIPTION``, ``add_arguments(parser)``,
``run(args) -> int``, optionally ``check_arguments(args) -> problem or None``, and ``main(argv)`` as
``common.main(sys.modules[__name__], argv)`` for its top-level script; ``lwop <verb>`` builds the same
parser as a subcommand. No command module imports jax or tensorflow at its top: ``--help`` of any command
stays fast.
"""

from __future__ import annotations

import argparse
import logging
import multiprocessing
import os
import sys
from types import ModuleType

from tqdm import tqdm

from lwop_jax.checkpoints.metadata import PRECISIONS
from lwop_jax.cli.extras import missing_extra
from lwop_jax.errors import LwopError
from lwop_jax.inference.backends import BACKENDS


def add_model_source_arguments(
    parser: argparse.ArgumentParser, *, default: str | None = None, required: bool = False
) -> None:
    """--checkpoint-path, --backend, --threads, --num-refinement-stages, --precision, --keypoint-schema: where
    the model comes from and what runs it (infer, evaluate)."""
    default_note = f" (default {default}: the original's checkpoint, downloaded and cached once)" if default else ''
    parser.add_argument(
        '--checkpoint-path',
        default=default,
        required=required,
        help=f'model: .onnx, OpenVINO .xml, torch .pth, orbax folder, or a published model by name{default_note}',
    )
    parser.add_argument('--backend', choices=sorted(BACKENDS), help='runtime (default: by model file type)')
    parser.add_argument('--threads', type=int, help='CPU threads of onnxruntime / openvino (default: theirs)')
    parser.add_argument(
        '--num-refinement-stages',
        type=int,
        help='keep this many refinement stages of a .pth or orbax model (default: all)',
    )
    add_precision_argument(
        parser,
        'compute precision (default: the one the model file was made for, fp32 if untagged): bf16 is '
        "OpenVINO's precision hint (fp32 with a warning on a CPU without bf16), int8 needs a quantized file",
    )
    parser.add_argument(
        '--keypoint-schema',
        metavar='NAME|FILE',
        help='keypoint schema of the model (coco18, coco17, figure or a schema .json); default: the one the '
        'model file carries (coco18 for files without one, such as the original .pth)',
    )


def add_precision_argument(parser, help_text: str, default: str | None = None, dest: str = 'precision') -> None:
    """--precision fp32|bf16|int8 (convert, infer, evaluate), or another flag of the same kind (``dest``)."""
    flag = '--' + dest.replace('_', '-')
    parser.add_argument(flag, choices=PRECISIONS, default=default, dest=dest, help=help_text)


def add_verbosity_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        '-v',
        '--verbose',
        action='store_true',
        help='also print informational logs (configuration, library start-up messages)',
    )


def make_parser(
    command: ModuleType, prog: str | None = None, parser: argparse.ArgumentParser | None = None
) -> argparse.ArgumentParser:
    """The argument parser of a command module (a new one, or ``parser`` filled in)."""
    parser = parser or argparse.ArgumentParser(prog=prog)
    parser.description = command.DESCRIPTION
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    command.add_arguments(parser)
    add_verbosity_argument(parser)
    return parser


def set_verbosity(verbose: bool) -> None:
    """Quiet by default: warnings and errors only, from lwop_jax and the libraries it drives.

    The environment variables must be set before TensorFlow is imported (its C++ start-up messages);
    the commands import it, if at all, after this.
    """
    level = logging.INFO if verbose else logging.WARNING
    logging.basicConfig(level=logging.WARNING, format='%(levelname)s %(name)s: %(message)s')
    logging.getLogger('lwop_jax').setLevel(level)
    if not verbose:
        os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '3')  # TensorFlow / XLA C++ logs
        os.environ.setdefault('GRPC_VERBOSITY', 'ERROR')
        os.environ.setdefault('OPENCV_FFMPEG_LOGLEVEL', '-8')  # AV_LOG_QUIET; bad files are reported by us
    for name in ('absl', 'jax', 'orbax', 'tensorflow'):
        logging.getLogger(name).setLevel(level)


def report_error(message: str) -> None:
    """One line on stderr that does not break a tqdm progress bar."""
    tqdm.write(f'error: {message}', file=sys.stderr)


def start_processes_without_fork() -> None:
    """Child processes start from a fork server (Python 3.14's default on Linux), not by forking this process.

    Why: a command loads JAX, whose threads make a fork unsafe (JAX warns on every fork: "os.fork() was called
    ... deadlock"), then calls libraries that start processes. OpenVINO's telemetry (openvino_telemetry: events
    on ``import openvino``, on each model conversion, and NNCF's) sends each event from a
    ``multiprocessing.Process`` of the default context: a fork, on Linux up to Python 3.13. The fork server is
    a fresh single-threaded interpreter that forks the children instead. A start method already in use (by a
    program that calls these commands in-process) is left alone: its processes may rely on fork.
    """
    if multiprocessing.get_start_method(allow_none=True) is None and (
        'forkserver' in multiprocessing.get_all_start_methods()
    ):
        multiprocessing.set_start_method('forkserver')


def run_command(command: ModuleType, args: argparse.Namespace) -> int:
    """Runs a parsed command: an LwopError (or an OSError) is one line and exit status 1, and so is an
    optional dependency that is not installed (the line names the extra to install); other exceptions are
    bugs and keep their traceback."""
    set_verbosity(getattr(args, 'verbose', False))
    start_processes_without_fork()
    try:
        return int(command.run(args) or 0)
    except (LwopError, OSError) as exc:  # OSError: an output that cannot be written (its message names it)
        report_error(str(exc))
        return 1
    except ModuleNotFoundError as exc:
        message = missing_extra(exc, command.__name__.rpartition('.')[2])
        if message is None:
            raise
        report_error(message)
        return 1
    except KeyboardInterrupt:
        print('interrupted', file=sys.stderr)
        return 130


def parse(command: ModuleType, parser: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace:
    """``parser.parse_args``, then the command's ``check_arguments(args)`` if it has one (a problem is a
    usage error: exit status 2, as argparse's own). A command with ``parse_extra(args, extra)`` receives
    the arguments its parser does not know (``lwop train``'s ``--config.KEY=VALUE``)."""
    if hasattr(command, 'parse_extra'):
        args, extra = parser.parse_known_args(argv)
        try:
            command.parse_extra(args, extra)
        except ValueError as exc:
            parser.error(str(exc))
    else:
        args = parser.parse_args(argv)
    check = getattr(command, 'check_arguments', None)
    problem = check(args) if check else None
    if problem:
        parser.error(problem)
    return args


def main(command: ModuleType, argv: list[str] | None = None, prog: str | None = None) -> int:
    """Parses ``argv`` for a command module and runs it: the ``main`` of its script and ``python -m``."""
    return run_command(command, parse(command, make_parser(command, prog), argv))
