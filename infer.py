"""Finds people in images or a video (the original demo.py): the same as ``lwop infer``; see --help."""

import sys

from lwop_jax.cli.infer import main

if __name__ == '__main__':
    sys.exit(main())
