"""COCO keypoint AP of a model (the original val.py): the same as ``lwop evaluate``; see --help."""

import sys

from lwop_jax.cli.evaluate import main

if __name__ == '__main__':
    sys.exit(main())
