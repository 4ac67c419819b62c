"""Quiet processes: what C++ libraries write to stderr silenced, TensorFlow started without its start-up lines.

Standard library only; TensorFlow (the [train] extra) is imported by :func:`start_tensorflow_quietly` alone.
"""

from __future__ import annotations

import contextlib
import os
import sys


@contextlib.contextmanager
def stderr_silenced():
    """File descriptor 2 pointed at /dev/null: silences what C++ libraries write there directly."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, 'w') as devnull:
            os.dup2(devnull.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def start_tensorflow_quietly(verbose: bool) -> None:
    """Imports TensorFlow (tf.data) with its start-up lines silenced unless ``verbose``, and hides the GPUs
    from it: only JAX may use the accelerator.

    TensorFlow 2.21 writes INFO lines from C++ when it starts (oneDNN, "Could not find cuda drivers",
    "failed call to cuInit") through absl logging, which TF_CPP_MIN_LOG_LEVEL no longer silences.
    Does nothing where TensorFlow is not installed (the inference-only install).
    """
    try:
        with contextlib.nullcontext() if verbose else stderr_silenced():
            import tensorflow as tf  # the [train] extra; only training and the demo start it

            tf.config.set_visible_devices([], 'GPU')
    except ImportError:
        return
