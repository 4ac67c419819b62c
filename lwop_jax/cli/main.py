"""``lwop``: one command with a verb for each job (infer, evaluate, train, convert, serve, data, demo, synthetic).

Each verb takes the flags of its top-level script (``lwop infer`` = ``python infer.py``); the parsers
are built from the command modules themselves, so the two never differ.
"""

from __future__ import annotations

import argparse
import sys

from lwop_jax import __version__
from lwop_jax.cli import common, convert, data, demo, evaluate, infer, serve, synthetic, train

COMMANDS = {
    'infer': infer,
    'evaluate': evaluate,
    'train': train,
    'convert': convert,
    'demo': demo,
    'synthetic': synthetic,
    'data': data,
    'serve': serve,
}


def build_parser() -> tuple[argparse.ArgumentParser, dict[str, argparse.ArgumentParser]]:
    """The ``lwop`` parser and its subcommand parsers by name."""
    parser = argparse.ArgumentParser(
        prog='lwop',
        description='Lightweight OpenPose in JAX: pose estimation '
        'inference, COCO evaluation, training, checkpoint conversion.',
    )
    parser.add_argument('--version', action='version', version=f'lwop_jax {__version__}')
    verbs = parser.add_subparsers(dest='command', metavar='COMMAND', required=True)
    subparsers = {}
    for name, command in COMMANDS.items():
        summary = command.DESCRIPTION.strip().split('\n')[0]
        subparsers[name] = common.make_parser(command, parser=verbs.add_parser(name, help=summary))
    return parser, subparsers


def main(argv: list[str] | None = None) -> int:
    parser, subparsers = build_parser()
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] in COMMANDS:
        command = COMMANDS[argv[0]]
        return common.run_command(command, common.parse(command, subparsers[argv[0]], argv[1:]))
    parser.parse_args(argv)  # --help, --version, or a usage error: argparse prints and exits
    return 2
