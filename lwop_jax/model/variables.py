"""A PoseNet's variables by dotted path: list them, fill them strictly, size and build networks cheaply.

The dotted paths are the torch state-dict keys with NNX leaf names ('model.0.0.kernel',
'cpm.align.0.bias', 'refinement_stages.0.trunk.4.trunk.1.1.mean'); checkpoint readers and training
fill a network through :func:`assign`, which checks every name and shape first.
"""

from __future__ import annotations

import re

import jax.numpy as jnp
import numpy as np
from flax import nnx

from lwop_jax.errors import ModelFileError
from lwop_jax.model.posenet import BACKBONE_DEPTH, BACKBONE_WIDTH, NUM_CHANNELS, PoseNet
from lwop_jax.skeleton import NUM_HEATMAPS, NUM_PAFS

_REFINEMENT_STAGE = re.compile(r'refinement_stages\.(\d+)\.')


def dotted(path) -> str:
    return '.'.join(str(p) for p in path)


def variables(model: nnx.Module) -> dict[str, nnx.Variable]:
    """NNX variables by dotted path ('model.0.0.kernel', 'cpm.align.0.bias', ...)."""
    return {dotted(path): var for path, var in nnx.to_flat_state(nnx.state(model))}


def refinement_stage_of(key: str) -> int | None:
    """The refinement stage a dotted key belongs to ('refinement_stages.2.…' -> 2), else None."""
    match = _REFINEMENT_STAGE.match(key)
    return int(match.group(1)) if match else None


def keep_refinement_stages(arrays: dict, count: int) -> dict:
    """The entries of ``{dotted key: value}`` outside refinement stages ``count`` and later."""
    return {key: value for key, value in arrays.items() if (stage := refinement_stage_of(key)) is None or stage < count}


def format_problems(source, problems: dict[str, list[str]]) -> str:
    """'<source>: checkpoint does not fit the network; missing: ...; unexpected: ...' (12 keys shown per kind)."""
    parts = []
    for what, keys in problems.items():
        if keys:
            shown = ', '.join(keys[:12]) + (f', ... ({len(keys)} in all)' if len(keys) > 12 else '')
            parts.append(f'{what}: {shown}')
    return f'{source}: checkpoint does not fit the network; ' + '; '.join(parts)


def assign(model: nnx.Module, arrays: dict[str, np.ndarray], source: str, *, strict: bool = True) -> list[str]:
    """Sets model variables from ``{nnx_key: array}``; checks names and shapes; returns the keys set.

    With ``strict`` every variable of the model must be given; otherwise only the given ones change.
    Nothing is modified unless every given array fits; a misfit raises ModelFileError naming ``source``.
    """
    targets = variables(model)
    unexpected = sorted(k for k in arrays if k not in targets)
    missing = sorted(k for k in targets if k not in arrays) if strict else []
    shapes = {k: tuple(v.get_value().shape) for k, v in targets.items()}
    misshaped = sorted(
        f'{k} {tuple(np.shape(a))} != {shapes[k]}'
        for k, a in arrays.items()
        if k in targets and tuple(np.shape(a)) != shapes[k]
    )
    if unexpected or missing or misshaped:
        raise ModelFileError(
            format_problems(source, {'missing': missing, 'unexpected': unexpected, 'wrong shape': misshaped})
        )
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
    """``backbone_width``, ``backbone_depth``, ``num_channels``, ``num_heatmaps`` and ``num_pafs`` of a
    PoseNet, a training config or checkpoint metadata (a key missing in older metadata, or in a config,
    whose heads follow its keypoint schema: the original's value)."""

    def get(key, default):
        if isinstance(model_or_meta, dict):
            return model_or_meta.get(key, default)
        return getattr(model_or_meta, key, default)

    return {
        'backbone_width': float(get('backbone_width', BACKBONE_WIDTH)),
        'backbone_depth': int(get('backbone_depth', BACKBONE_DEPTH)),
        'num_channels': int(get('num_channels', NUM_CHANNELS)),
        'num_heatmaps': int(get('num_heatmaps', NUM_HEATMAPS)),
        'num_pafs': int(get('num_pafs', NUM_PAFS)),
    }


def model_summary(model: PoseNet) -> str:
    params = sum(int(np.size(v[...])) for v in variables(model).values())
    return f'PoseNet with {model.num_refinement_stages} refinement stage(s), {params:,} values'
