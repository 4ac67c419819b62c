"""Torch checkpoints into PoseNet: the state-dict keys mapped onto NNX paths, strictly; MobileNet import.

The NNX module tree mirrors the torch keys, so a torch key maps to an NNX path by renaming its last
component only (see ``_TORCH_LEAF``). Every load is strict: any missing, unexpected or mis-shaped tensor
raises :class:`~lwop_jax.errors.ModelFileError` listing them (the original only printed a warning and kept
random weights). Files are read by :mod:`lwop_jax.checkpoints.torch_file`, without torch.
"""

from __future__ import annotations

import re

import numpy as np
from flax import nnx

from lwop_jax.checkpoints import torch_file
from lwop_jax.errors import ModelFileError
from lwop_jax.model.layers import BatchNorm2d, Conv2d
from lwop_jax.model.posenet import PoseNet
from lwop_jax.model.variables import (
    assign,
    dotted,
    empty_model,
    format_problems,
    keep_refinement_stages,
    refinement_stage_of,
    variables,
)

# (module type, NNX leaf) -> torch leaf name.
_TORCH_LEAF = {
    (Conv2d, 'kernel'): 'weight',
    (Conv2d, 'bias'): 'bias',
    (BatchNorm2d, 'scale'): 'weight',
    (BatchNorm2d, 'bias'): 'bias',
    (BatchNorm2d, 'mean'): 'running_mean',
    (BatchNorm2d, 'var'): 'running_var',
}
# Torch buffers with no NNX counterpart: BN's update counter (unused with a fixed momentum).
_TORCH_ONLY_LEAVES = ('num_batches_tracked',)


def _torch_names(model: PoseNet) -> dict[str, tuple[str, bool]]:
    """torch key -> (NNX key, whether the tensor is a conv kernel needing OIHW -> HWIO)."""
    names = {}
    for path, module in nnx.iter_modules(model):
        for leaf in ('kernel', 'bias', 'scale', 'mean', 'var'):
            torch_leaf = _TORCH_LEAF.get((type(module), leaf))
            if torch_leaf is None or getattr(module, leaf, None) is None:
                continue
            prefix = dotted(path)
            names[f'{prefix}.{torch_leaf}'] = (f'{prefix}.{leaf}', leaf == 'kernel')
    return names


def torch_to_nnx(
    state_dict: dict[str, np.ndarray], model: PoseNet, source: str, *, prefix_filter: str | None = None
) -> dict[str, np.ndarray]:
    """Renames torch keys to NNX keys and transposes conv kernels; unknown keys raise ModelFileError."""
    names = _torch_names(model)
    out, unexpected, misshaped = {}, [], []
    for key, tensor in state_dict.items():
        if prefix_filter and not key.startswith(prefix_filter):
            continue
        if key.rsplit('.', 1)[-1] in _TORCH_ONLY_LEAVES and key.rsplit('.', 1)[0] + '.running_mean' in names:
            if np.size(tensor) != 1:
                misshaped.append(f'{key} {tuple(np.shape(tensor))} != ()')
            continue
        if key not in names:
            unexpected.append(key)
            continue
        nnx_key, is_kernel = names[key]
        array = np.asarray(tensor, dtype=np.float32)
        if is_kernel:
            if array.ndim != 4:
                misshaped.append(f'{key} {array.shape} is not a 4-d conv weight')
                continue
            array = array.transpose(2, 3, 1, 0)  # OIHW -> HWIO
        out[nnx_key] = array
    if unexpected or misshaped:
        raise ModelFileError(format_problems(source, {'unexpected': sorted(unexpected), 'wrong shape': misshaped}))
    return out


def num_refinement_stages_of(state_dict) -> int:
    """Number of refinement stages a torch state dict holds (from its ``refinement_stages.N.`` keys)."""
    stages = {stage for key in state_dict if (stage := refinement_stage_of(key)) is not None}
    return max(stages) + 1 if stages else 0


def model_from_torch(path, *, num_refinement_stages: int | None = None, dtype=None) -> PoseNet:
    """PoseNet in eval mode with the weights of a torch checkpoint (published format), read without torch.

    ``num_refinement_stages`` defaults to what the file holds; a smaller number keeps the first stages
    (the original evaluates its 3-stage training run with 1 refinement stage).
    """
    state_dict = torch_file.read_state_dict(path)
    if not any(k.startswith('initial_stage.') for k in state_dict):
        raise ModelFileError(
            f'{path}: not a Lightweight OpenPose checkpoint (no initial_stage.* tensors; '
            'for MobileNet ImageNet weights use --from-mobilenet)'
        )
    available = num_refinement_stages_of(state_dict)
    k = available if num_refinement_stages is None else num_refinement_stages
    if k > available:
        raise ModelFileError(f'{path}: holds {available} refinement stages, {k} requested')
    kept = keep_refinement_stages(state_dict, k)
    model = empty_model(k, dtype)
    assign(model, torch_to_nnx(kept, model, str(path)), str(path))
    return model.set_training(False)


def init_backbone_from_mobilenet(model: PoseNet, path) -> str:
    """Initialises the backbone blocks (``model.0`` .. ``model.11``; fewer for a shorter ``backbone_depth``)
    from a MobileNet-v1 ImageNet checkpoint, as ``--from-mobilenet``.

    The file (``mobilenet_sgd_68.848.pth.tar`` layout: ``module.model.N.*``, ``module.fc.*``) must hold every
    backbone tensor with the right shape. Returns a one-line report of what was initialised and ignored.
    """
    state_dict = torch_file.read_state_dict(path)
    depth = model.backbone_depth
    backbone = {
        k: v for k, v in state_dict.items() if (m := re.match(r'model\.(\d+)\.', k)) and int(m.group(1)) < depth
    }
    if not backbone:
        raise ModelFileError(f'{path}: no MobileNet backbone tensors (model.N.*) in this file')
    arrays = torch_to_nnx(backbone, model, str(path))
    expected = sorted(k for k in variables(model) if k.startswith('model.'))
    missing = sorted(set(expected) - set(arrays))
    if missing:
        raise ModelFileError(format_problems(str(path), {'missing backbone tensors': missing}))
    assign(model, arrays, str(path), strict=False)
    ignored = sorted({'.'.join(k.split('.')[:2]) for k in state_dict if k not in backbone})
    return (
        f'initialised {len(arrays)} backbone tensors (model.0-model.{depth - 1}) from {path}; '
        f'ignored {", ".join(ignored)}; the CPM and all stages keep their initialisation'
    )
