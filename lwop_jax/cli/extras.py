"""The install extra behind each optional dependency, and the one line that names it when one is missing.

The core install (NumPy, OpenCV, ONNX Runtime, tqdm) runs ONNX models; the rest comes with extras
(pyproject.toml). Each optional package is imported where it is first needed, so a command that reaches one
on an install without it fails with ModuleNotFoundError at that import, wherever it sits. Rather than guard
every import site, :func:`missing_extra` maps the error to the extra to install, and
:func:`lwop_jax.cli.common.run_command` prints it as one line for every command.
"""

from __future__ import annotations

# The extra that brings each optional top-level module, chosen for what the user was doing. jax and its
# companions map to [export], not [jax]: a .pth or an orbax folder is read by the JAX backend ([jax]) but
# handed to ONNX Runtime or OpenVINO through an ONNX export (jax2onnx, onnx), and [export] covers both.
MODULE_EXTRAS = {
    'jax': 'export',
    'jaxlib': 'export',
    'flax': 'export',
    'optax': 'export',
    'orbax': 'export',
    'ml_collections': 'export',
    'ml_dtypes': 'export',
    'jax2onnx': 'export',
    'onnx': 'export',
    'openvino': 'openvino',
    'nncf': 'openvino',
    'pycocotools': 'eval',
    'tensorflow': 'train',
    'tensorflow_datasets': 'train',
    'tensorboard': 'train',
    'starlette': 'serve',
    'uvicorn': 'serve',
    'websockets': 'serve',
    'prometheus_client': 'serve',
    'python_multipart': 'serve',
}
# Commands whose every run needs the same extras: naming them all at once saves installing one per error.
COMMAND_EXTRAS = {'train': 'train', 'demo': 'train,export'}


def missing_extra(error: ModuleNotFoundError, command: str | None = None) -> str | None:
    """The one-line message for ``error`` when it is an optional dependency that is not installed (None
    otherwise: a module missing inside an installed package, or one of lwop_jax's own, is a bug).

    Only a top-level name counts: ``import orbax.checkpoint`` without orbax fails with the name 'orbax',
    whereas a missing 'jax._src.x' means an installed jax of another version, which no extra fixes.
    """
    module = error.name
    if module not in MODULE_EXTRAS:
        return None
    extra = COMMAND_EXTRAS.get(command or '', MODULE_EXTRAS[module])
    return f"{module} is not installed: this needs the lwop_jax[{extra}] extra (pip install 'lwop_jax[{extra}]')"


__all__ = ['COMMAND_EXTRAS', 'MODULE_EXTRAS', 'missing_extra']
