"""Converts a checkpoint to orbax, ONNX and OpenVINO IR: the same as ``lwop convert``; see --help."""

import sys

from lwop_jax.cli.convert import main

if __name__ == '__main__':
    sys.exit(main())
