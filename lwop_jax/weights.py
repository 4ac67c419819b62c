"""Weights in and out of :class:`~lwop_jax.model.PoseNet`: torch checkpoints, MobileNet, orbax.

The NNX module tree mirrors the torch keys, so a torch key maps to an NNX path by renaming its last
component only (see ``_TORCH_LEAF``). Every load is strict: any missing, unexpected or mis-shaped tensor
raises :class:`WeightsError` listing them (the original only printed a warning and kept random weights).

Orbax layout written here (and by training): a directory with two items, ``model`` (the NNX state as a
nested dict: params and BatchNorm statistics) and ``meta`` (JSON: architecture and provenance). A
CheckpointManager root (numbered step folders) is accepted too; its latest step is used.
"""
from __future__ import annotations

import json
import pathlib
import re

import jax.numpy as jnp
import numpy as np
from flax import nnx

from lwop_jax import torch_checkpoint
from lwop_jax.errors import WeightsError
from lwop_jax.model import BACKBONE_DEPTH, BatchNorm2d, Conv2d, PoseNet

FORMAT_NAME = 'lwop_jax'
FORMAT_VERSION = 1

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


def _key(path) -> str:
    return '.'.join(str(p) for p in path)


def variables(model: nnx.Module) -> dict[str, nnx.Variable]:
    """NNX variables by dotted path ('model.0.0.kernel', 'cpm.align.0.bias', ...)."""
    return {_key(path): var for path, var in nnx.to_flat_state(nnx.state(model))}


def _torch_names(model: PoseNet) -> dict[str, tuple[str, bool]]:
    """torch key -> (NNX key, whether the tensor is a conv kernel needing OIHW -> HWIO)."""
    names = {}
    for path, module in nnx.iter_modules(model):
        for leaf in ('kernel', 'bias', 'scale', 'mean', 'var'):
            torch_leaf = _TORCH_LEAF.get((type(module), leaf))
            if torch_leaf is None or getattr(module, leaf, None) is None:
                continue
            prefix = _key(path)
            names[f'{prefix}.{torch_leaf}'] = (f'{prefix}.{leaf}', leaf == 'kernel')
    return names


def _format_problems(source, problems: dict[str, list[str]]) -> str:
    parts = []
    for what, keys in problems.items():
        if keys:
            shown = ', '.join(keys[:12]) + (f', ... ({len(keys)} in all)' if len(keys) > 12 else '')
            parts.append(f'{what}: {shown}')
    return f'{source}: checkpoint does not fit the network; ' + '; '.join(parts)


def assign(model: nnx.Module, arrays: dict[str, np.ndarray], source: str, *, strict: bool = True) -> list[str]:
    """Sets model variables from ``{nnx_key: array}``; checks names and shapes; returns the keys set.

    With ``strict`` every variable of the model must be given; otherwise only the given ones change.
    Nothing is modified unless every given array fits.
    """
    targets = variables(model)
    unexpected = sorted(k for k in arrays if k not in targets)
    missing = sorted(k for k in targets if k not in arrays) if strict else []
    shapes = {k: tuple(v.get_value().shape) for k, v in targets.items()}
    misshaped = sorted(f'{k} {tuple(np.shape(a))} != {shapes[k]}'
                       for k, a in arrays.items() if k in targets and tuple(np.shape(a)) != shapes[k])
    if unexpected or missing or misshaped:
        raise WeightsError(_format_problems(source, {
            'missing': missing, 'unexpected': unexpected, 'wrong shape': misshaped}))
    for k, a in arrays.items():
        targets[k].set_value(jnp.asarray(a, dtype=targets[k].get_value().dtype))
    return list(arrays)


def empty_model(num_refinement_stages: int, dtype=None, **size) -> PoseNet:
    """A PoseNet whose variables are shapes only (no random init: fast), to be filled by :func:`assign`.

    ``size``: PoseNet's ``backbone_width`` / ``backbone_depth`` / ``num_channels`` (see :func:`model_size`);
    default: the original's.
    """
    return nnx.eval_shape(lambda: PoseNet(num_refinement_stages=num_refinement_stages, dtype=dtype, **size))


def model_size(model_or_meta) -> dict:
    """``backbone_width``, ``backbone_depth`` and ``num_channels`` of a PoseNet, a training config or
    checkpoint metadata (a key missing in older metadata: the original's value)."""
    get = model_or_meta.get if isinstance(model_or_meta, dict) else lambda key, default: getattr(model_or_meta, key, default)
    return {'backbone_width': float(get('backbone_width', 1.0)),
            'backbone_depth': int(get('backbone_depth', BACKBONE_DEPTH)),
            'num_channels': int(get('num_channels', 128))}


def torch_to_nnx(state_dict: dict[str, np.ndarray], model: PoseNet, source: str,
                 *, prefix_filter: str | None = None) -> dict[str, np.ndarray]:
    """Renames torch keys to NNX keys and transposes conv kernels; unknown keys raise WeightsError."""
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
        raise WeightsError(_format_problems(source, {'unexpected': sorted(unexpected), 'wrong shape': misshaped}))
    return out


def num_refinement_stages_of(state_dict) -> int:
    """Number of refinement stages a torch state dict holds (from its ``refinement_stages.N.`` keys)."""
    stages = {int(m.group(1)) for k in state_dict if (m := re.match(r'refinement_stages\.(\d+)\.', k))}
    return max(stages) + 1 if stages else 0


def model_from_torch(path, *, num_refinement_stages: int | None = None, dtype=None) -> PoseNet:
    """PoseNet in eval mode with the weights of a torch checkpoint (published format), read without torch.

    ``num_refinement_stages`` defaults to what the file holds; a smaller number keeps the first stages
    (the original evaluates its 3-stage training run with 1 refinement stage).
    """
    state_dict = torch_checkpoint.read_state_dict(path)
    if not any(k.startswith('initial_stage.') for k in state_dict):
        raise WeightsError(f'{path}: not a Lightweight OpenPose checkpoint (no initial_stage.* tensors; '
                           'for MobileNet ImageNet weights use --from-mobilenet)')
    available = num_refinement_stages_of(state_dict)
    k = available if num_refinement_stages is None else num_refinement_stages
    if k > available:
        raise WeightsError(f'{path}: holds {available} refinement stages, {k} requested')
    kept = {key: v for key, v in state_dict.items()
            if not (m := re.match(r'refinement_stages\.(\d+)\.', key)) or int(m.group(1)) < k}
    model = empty_model(k, dtype)
    assign(model, torch_to_nnx(kept, model, str(path)), str(path))
    return model.set_training(False)


def init_backbone_from_mobilenet(model: PoseNet, path) -> str:
    """Initialises the backbone blocks (``model.0`` .. ``model.11``; fewer for a shorter ``backbone_depth``)
    from a MobileNet-v1 ImageNet checkpoint, as ``--from-mobilenet``.

    The file (``mobilenet_sgd_68.848.pth.tar`` layout: ``module.model.N.*``, ``module.fc.*``) must hold every
    backbone tensor with the right shape. Returns a one-line report of what was initialised and ignored.
    """
    state_dict = torch_checkpoint.read_state_dict(path)
    depth = model.backbone_depth
    backbone = {k: v for k, v in state_dict.items()
                if (m := re.match(r'model\.(\d+)\.', k)) and int(m.group(1)) < depth}
    if not backbone:
        raise WeightsError(f'{path}: no MobileNet backbone tensors (model.N.*) in this file')
    arrays = torch_to_nnx(backbone, model, str(path))
    expected = sorted(k for k in variables(model) if k.startswith('model.'))
    missing = sorted(set(expected) - set(arrays))
    if missing:
        raise WeightsError(_format_problems(str(path), {'missing backbone tensors': missing}))
    assign(model, arrays, str(path), strict=False)
    ignored = sorted({'.'.join(k.split('.')[:2]) for k in state_dict if k not in backbone})
    return (f'initialised {len(arrays)} backbone tensors (model.0-model.{depth - 1}) from {path}; '
            f'ignored {", ".join(ignored)}; the CPM and all stages keep their initialisation')


# ----------------------------------------------------------------------------------------------- orbax

def model_meta(model: PoseNet, **extra) -> dict:
    return {'format': FORMAT_NAME, 'version': FORMAT_VERSION,
            'num_refinement_stages': model.num_refinement_stages, **model_size(model), **extra}


def _composite_checkpointer():
    import orbax.checkpoint as ocp
    return ocp.Checkpointer(ocp.CompositeCheckpointHandler())


def save_model(model: PoseNet, directory, **meta) -> pathlib.Path:
    """Writes the model as an orbax checkpoint (atomic: orbax writes a temporary folder, then renames)."""
    import orbax.checkpoint as ocp
    directory = pathlib.Path(directory).absolute()
    state = nnx.to_pure_dict(nnx.state(model))
    with _composite_checkpointer() as checkpointer:
        checkpointer.save(directory, ocp.args.Composite(
            model=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(model_meta(model, **meta))), force=True)
    return directory


def resolve_orbax_dir(path) -> pathlib.Path:
    """A checkpoint folder itself, or the latest numbered step of a CheckpointManager root."""
    path = pathlib.Path(path)
    if (path / 'meta').exists() and (path / 'model').exists():
        return path
    steps = sorted((int(p.name), p) for p in path.iterdir() if p.is_dir() and p.name.isdigit()) \
        if path.is_dir() else []
    for _, step_dir in reversed(steps):
        if (step_dir / 'meta').exists() and (step_dir / 'model').exists():
            return step_dir
    raise WeightsError(f'{path}: not an lwop_jax orbax checkpoint (no model/ and meta/ items, no step folders)')


def read_orbax_meta(path) -> dict:
    directory = resolve_orbax_dir(path)
    for candidate in (directory / 'meta' / 'metadata', *sorted((directory / 'meta').glob('*'))):
        if candidate.is_file():
            try:
                meta = json.loads(candidate.read_text())
            except (ValueError, UnicodeDecodeError):
                continue
            if isinstance(meta, dict) and meta.get('format') == FORMAT_NAME:
                return meta
    raise WeightsError(f'{directory}: meta item is missing or is not lwop_jax metadata')


def load_model(path, *, num_refinement_stages: int | None = None, dtype=None) -> PoseNet:
    """PoseNet in eval mode from an orbax checkpoint written by :func:`save_model` or by training."""
    import orbax.checkpoint as ocp
    directory = resolve_orbax_dir(path)
    meta = read_orbax_meta(directory)
    available = int(meta['num_refinement_stages'])
    k = available if num_refinement_stages is None else num_refinement_stages
    if k > available:
        raise WeightsError(f'{directory}: holds {available} refinement stages, {k} requested')
    try:
        with _composite_checkpointer() as checkpointer:
            restored = checkpointer.restore(directory.absolute(), ocp.args.Composite(model=ocp.args.StandardRestore()))
    except Exception as exc:  # orbax raises many types; the user needs the file and the reason
        raise WeightsError(f'{directory}: cannot read the orbax checkpoint ({type(exc).__name__}: {exc})') from exc
    flat = {_key(path): np.asarray(leaf) for path, leaf in _flatten_dict(restored['model'])}
    flat = {k2: v for k2, v in flat.items()
            if not (m := re.match(r'refinement_stages\.(\d+)\.', k2)) or int(m.group(1)) < k}
    model = empty_model(k, dtype, **model_size(meta))
    assign(model, flat, str(directory))
    return model.set_training(False)


def _flatten_dict(tree, prefix=()):
    for key, value in tree.items():
        if isinstance(value, dict):
            yield from _flatten_dict(value, prefix + (key,))
        else:
            yield prefix + (key,), value


def load_any(path, *, num_refinement_stages: int | None = None, dtype=None) -> PoseNet:
    """PoseNet in eval mode from a torch checkpoint file or an orbax checkpoint folder."""
    path = pathlib.Path(path)
    if not path.exists():
        raise WeightsError(f'{path}: file not found')
    if path.is_dir():
        return load_model(path, num_refinement_stages=num_refinement_stages, dtype=dtype)
    return model_from_torch(path, num_refinement_stages=num_refinement_stages, dtype=dtype)


def model_summary(model: PoseNet) -> str:
    params = sum(int(np.size(v[...])) for v in variables(model).values())
    return f'PoseNet with {model.num_refinement_stages} refinement stage(s), {params:,} values'


__all__ = ['WeightsError', 'model_from_torch', 'init_backbone_from_mobilenet', 'save_model', 'load_model',
           'load_any', 'assign', 'variables', 'num_refinement_stages_of', 'read_orbax_meta', 'resolve_orbax_dir']
