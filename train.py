"""Trains Lightweight OpenPose as a config says: the same as ``lwop train``; see --help."""

import sys

from lwop_jax.cli.train import main

if __name__ == '__main__':
    sys.exit(main())
