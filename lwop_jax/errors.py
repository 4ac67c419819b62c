"""The exceptions lwop_jax raises for bad input: one family, caught by every command.

A command prints an :class:`LwopError` as one line, ``error: <message>``, and exits with status 1;
messages start with the file they are about. Anything else is a bug and keeps its traceback.
Standard library only: every layer imports this module.
"""

from __future__ import annotations


class LwopError(Exception):
    """Base class: an expected failure whose message is one line naming the file and the problem."""


class InputFileError(LwopError, ValueError):
    """Unusable input data: an image, an annotation or label file, a folder of images, a config."""


class ModelFileError(LwopError, ValueError):
    """A model file that cannot be read, does not fit the network, or that a runtime cannot open."""


class AccuracyGateError(LwopError):
    """A quantized model that lost too much accuracy against its float original; nothing was written."""


class FetchError(LwopError):
    """A download that failed; ``url`` and ``reason`` are kept apart so that callers can reword it."""

    def __init__(self, url: str, reason: str, message: str | None = None):
        self.url, self.reason = url, ' '.join(str(reason).split())
        super().__init__(message or f'cannot download {url} ({self.reason})')


class TrainingError(LwopError):
    """Training cannot start (bad configuration) or had to stop."""


class NonFiniteLossError(TrainingError):
    """Training stopped on a NaN/inf loss; the message names the iteration and the last good checkpoint."""
