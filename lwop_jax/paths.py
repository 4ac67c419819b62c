"""Where lwop_jax keeps files of its own: the cache of downloaded and converted models."""

from __future__ import annotations

import os
import pathlib


def cache_dir() -> pathlib.Path:
    """Where converted and downloaded models are kept: $LWOP_JAX_CACHE, else ~/.cache/lwop_jax."""
    return pathlib.Path(os.environ.get('LWOP_JAX_CACHE', pathlib.Path.home() / '.cache' / 'lwop_jax'))
