"""The original's optimizer: Adam with 13 parameter groups (lr x1/x2/x4/x8, L2 weight decay where the
original applies it) and MultiStepLR x0.333 at epochs 100, 200, 260, as one optax transformation."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from lwop_jax.model.layers import BatchNorm2d, Conv2d
from lwop_jax.model.posenet import PoseNet

ADAM_B1, ADAM_B2, ADAM_EPS = 0.9, 0.999, 1e-8


@dataclasses.dataclass(frozen=True)
class ParamGroup:
    name: str
    lr_multiplier: float
    weight_decay: bool  # whether the config's weight decay applies (the original sets 0 elsewhere)


# The 13 Adam parameter groups of the original train.py, in its order. The original selects by module:
# get_parameters_conv = Conv2d with groups == 1; get_parameters_conv_depthwise = groups == in == out
# channels; get_parameters_bn = BatchNorm2d.
PARAM_GROUPS = (
    ParamGroup('backbone_conv_weight', 1, True),
    ParamGroup('backbone_depthwise_weight', 1, False),
    ParamGroup('backbone_bn_weight', 1, False),
    ParamGroup('backbone_bn_bias', 2, False),
    ParamGroup('cpm_conv_weight', 1, True),
    ParamGroup('cpm_conv_bias', 2, False),
    ParamGroup('cpm_depthwise_weight', 1, False),
    ParamGroup('initial_stage_conv_weight', 1, True),
    ParamGroup('initial_stage_conv_bias', 2, False),
    ParamGroup('refinement_conv_weight', 4, True),
    ParamGroup('refinement_conv_bias', 8, False),
    ParamGroup('refinement_bn_weight', 1, False),
    ParamGroup('refinement_bn_bias', 2, False),
)
_GROUP_BY_NAME = {group.name: group for group in PARAM_GROUPS}
_PART_PREFIX = {'model': 'backbone', 'cpm': 'cpm', 'initial_stage': 'initial_stage', 'refinement_stages': 'refinement'}


def _group_of(part: str, module: nnx.Module, leaf: str) -> str | None:
    prefix = _PART_PREFIX.get(part)
    if isinstance(module, Conv2d):
        in_channels = module.kernel.get_value().shape[2] * module.groups
        out_channels = module.kernel.get_value().shape[3]
        if module.groups == 1:
            kind = 'conv'
        elif module.groups == in_channels == out_channels:
            kind = 'depthwise'
        else:
            return None
        name = f'{prefix}_{kind}_{"weight" if leaf == "kernel" else leaf}'
    elif isinstance(module, BatchNorm2d):
        name = f'{prefix}_bn_{"weight" if leaf == "scale" else leaf}'
    else:
        return None
    return name if name in _GROUP_BY_NAME else None


def param_group_names(model: PoseNet) -> dict[str, str]:
    """{dotted parameter path ('model.0.0.kernel', ...): group name} for every parameter.

    Raises ValueError for a parameter that none of the original's groups would select (torch would
    silently not train it): that means the architecture no longer matches the original.
    """
    modules = {tuple(path): module for path, module in nnx.iter_modules(model)}
    groups, orphans = {}, []
    for path, _ in nnx.to_flat_state(nnx.state(model, nnx.Param)):
        module, leaf = modules[tuple(path[:-1])], str(path[-1])
        name = _group_of(str(path[0]), module, leaf)
        key = '.'.join(str(p) for p in path)
        if name is None:
            orphans.append(key)
        groups[key] = name
    if orphans:
        raise ValueError(f'parameters outside the original 13 Adam groups: {orphans}')
    return groups


def _dotted(key_path) -> str:
    """'cpm.align.0.bias' from a pytree key path (Variable nodes add a trailing '.value')."""
    parts = []
    for entry in key_path:
        if isinstance(entry, jax.tree_util.DictKey):
            parts.append(str(entry.key))
        elif isinstance(entry, jax.tree_util.SequenceKey):
            parts.append(str(entry.idx))
        elif isinstance(entry, jax.tree_util.GetAttrKey) and entry.name != 'value':
            parts.append(entry.name)
    return '.'.join(parts)


def epoch_lr_factor(step, steps_per_epoch: int, drop_epochs=(100, 200, 260), drop_factor: float = 0.333):
    """The original MultiStepLR as a function of the iteration (0-based, as optax counts updates).

    The original calls ``scheduler.step()`` at the start of every epoch, so during epoch e (0-based)
    the scheduler's ``last_epoch`` is e + 1 and the lr is ``base * 0.333 ** #{m <= e + 1}``: the
    first drop happens at the start of the 100th epoch (index 99).
    """
    epoch = jnp.asarray(step) // steps_per_epoch
    drops = jnp.sum(epoch + 1 >= jnp.asarray(drop_epochs, jnp.int32)) if len(drop_epochs) else 0
    return jnp.asarray(drop_factor, jnp.float32) ** drops


def param_group_tree(model: PoseNet, params) -> Any:
    """The group name of every leaf of ``params`` (a pytree shaped like ``nnx.state(model, nnx.Param)``)."""
    names = param_group_names(model)
    return jax.tree_util.tree_map_with_path(lambda path, _: names[_dotted(path)], params)


class ScaleByGroupLearningRateState(NamedTuple):
    count: jax.Array  # updates done: the schedule's iteration


def scale_by_group_learning_rate(schedule: Callable, multipliers: Callable) -> optax.GradientTransformation:
    """``update * -(schedule(count) * multiplier of the leaf's group)``: torch's per-group lr.

    ``multipliers(params)`` gives a float per leaf. One scalar lr per group, as torch computes it.
    """

    def init_fn(params):
        del params
        return ScaleByGroupLearningRateState(count=jnp.zeros((), jnp.int32))

    def update_fn(updates, state, params):
        lr = schedule(state.count)
        factors = multipliers(updates)
        updates = jax.tree.map(lambda u, m: u * (-lr * m).astype(u.dtype), updates, factors)
        return updates, ScaleByGroupLearningRateState(count=optax.safe_increment(state.count))

    return optax.GradientTransformation(init_fn, update_fn)


def make_optimizer(
    model: PoseNet,
    *,
    base_lr: float,
    weight_decay: float,
    steps_per_epoch: int,
    drop_epochs=(100, 200, 260),
    drop_factor: float = 0.333,
) -> optax.GradientTransformation:
    """Adam with the original's 13 parameter groups and MultiStepLR, for ``nnx.state(model, nnx.Param)``.

    Per group: L2 weight decay added to the gradient *before* Adam (torch ``Adam(weight_decay=...)``,
    not AdamW) where the original applies it, Adam (betas 0.9/0.999, eps 1e-8: torch's defaults), then
    ``-base_lr * multiplier * 0.333 ** drops``. One Adam over all leaves with per-leaf group settings:
    13 masked Adams (optax.multi_transform) gave the same numbers but made the update 15x slower on CPU.
    """

    def groups(params):
        return param_group_tree(model, params)

    def decays(params):
        return jax.tree.map(lambda name: _GROUP_BY_NAME[name].weight_decay, groups(params))

    def multipliers(params):
        return jax.tree.map(lambda name: float(_GROUP_BY_NAME[name].lr_multiplier), groups(params))

    def schedule(count):
        return base_lr * epoch_lr_factor(count, steps_per_epoch, drop_epochs, drop_factor)

    decay = [optax.add_decayed_weights(weight_decay, mask=decays)] if weight_decay else []
    return optax.chain(
        *decay,
        optax.scale_by_adam(b1=ADAM_B1, b2=ADAM_B2, eps=ADAM_EPS),
        scale_by_group_learning_rate(schedule, multipliers),
    )
