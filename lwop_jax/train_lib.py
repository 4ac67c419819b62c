"""Training of Lightweight OpenPose (the original ``train.py``) in JAX: loss, optimizer, step, loop.

Layout follows the flax examples (imagenet): small top-level functions and one entry point,
:func:`train_and_evaluate`. What carries over from the original, and where this differs:

* Loss: the original ``l2_loss`` on heatmaps and PAFs of every stage, summed (:func:`loss_fn`).
* Optimizer: Adam with the original's 13 parameter groups (lr x1/x2/x4/x8, L2 weight decay 5e-4
  added to the gradient as torch's Adam does, only where the original applies it), see
  :data:`PARAM_GROUPS` and :func:`make_optimizer`; MultiStepLR x0.333 at epochs 100, 200, 260.
* Gradient accumulation (``batches_per_iter``): the original divides each batch's loss by
  ``batches_per_iter`` and sums the gradients; BatchNorm statistics update on every batch. One call
  of :func:`train_step` is one iteration and scans over the ``batches_per_iter`` batches.
* Data parallelism: one ``jax.sharding.Mesh`` over all devices (all hosts), batch sharded along
  ``'data'``, parameters replicated. BatchNorm statistics are computed over the *global* batch (sync
  BN), so results do not depend on the device count; the original's ``DataParallel`` normalised each
  GPU's slice separately.
* Resume is exact: parameters, BatchNorm statistics, optimizer state, iteration and data position
  are all in the orbax checkpoint, so a resumed run ends bit-identical to an uninterrupted one. (The
  original restarted the interrupted epoch from its beginning and stepped the scheduler again.)
"""
from __future__ import annotations

import dataclasses
import functools
import math
import pathlib
import re
import time
from typing import Any, Callable, Iterator, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import logging
from flax import nnx
from flax import struct
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from lwop_jax import weights
from lwop_jax.model import BatchNorm2d, Conv2d, PoseNet

DATA_AXIS = 'data'
# The original: MultiStepLR(milestones=[100, 200, 260], gamma=0.333), stepped at the start of each
# epoch, and at most 280 epochs.
ADAM_B1, ADAM_B2, ADAM_EPS = 0.9, 0.999, 1e-8


# ------------------------------------------------------------------------------------------- loss

def l2_loss(prediction, target, mask, batch_size):
    """The original ``l2_loss``: sum of ((prediction - target) * mask)^2 / 2 / batch_size.

    ``mask`` (B, h, w) multiplies the *difference*, so fractional mask values (crowd borders after
    the INTER_AREA downsampling) enter squared, as in the original.
    """
    difference = (prediction - target) * mask[..., None]
    return jnp.sum(jnp.square(difference)) / 2 / batch_size


def loss_fn(stage_outputs, heatmaps, pafs, mask):
    """Total loss over all stages and the per-stage losses (for logging, as the original prints them).

    Args:
        stage_outputs: ``model(images)``: a list of (heatmaps, pafs) per stage.
        heatmaps, pafs, mask: targets (B, h, w, 19), (B, h, w, 38), (B, h, w).
    Returns:
        (total, {'stage1_heatmaps': ..., 'stage1_pafs': ..., 'stage2_heatmaps': ..., ...}).
    """
    batch_size = heatmaps.shape[0]
    per_stage = {}
    for index, (predicted_heatmaps, predicted_pafs) in enumerate(stage_outputs, start=1):
        per_stage[f'stage{index}_heatmaps'] = l2_loss(predicted_heatmaps, heatmaps, mask, batch_size)
        per_stage[f'stage{index}_pafs'] = l2_loss(predicted_pafs, pafs, mask, batch_size)
    return sum(per_stage.values()), per_stage


# ---------------------------------------------------------------------------------- optimizer

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
_PART_PREFIX = {'model': 'backbone', 'cpm': 'cpm', 'initial_stage': 'initial_stage',
                'refinement_stages': 'refinement'}


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


def make_optimizer(model: PoseNet, *, base_lr: float, weight_decay: float, steps_per_epoch: int,
                   drop_epochs=(100, 200, 260), drop_factor: float = 0.333) -> optax.GradientTransformation:
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
    return optax.chain(*decay, optax.scale_by_adam(b1=ADAM_B1, b2=ADAM_B2, eps=ADAM_EPS),
                       scale_by_group_learning_rate(schedule, multipliers))


# -------------------------------------------------------------------------------------- state

@struct.dataclass
class TrainState:
    """Everything that changes during training; a pytree (jit/donate/shard as a whole)."""
    step: jax.Array          # iterations (optimizer steps) done
    params: nnx.State
    batch_stats: nnx.State
    opt_state: optax.OptState


def create_train_state(model: PoseNet, tx: optax.GradientTransformation) -> tuple[nnx.GraphDef, TrainState]:
    """Splits a model (put in training mode) into its static graph and a :class:`TrainState`."""
    model.set_training(True)
    graphdef, params, batch_stats = nnx.split(model, nnx.Param, nnx.BatchStat)
    return graphdef, TrainState(step=jnp.zeros((), jnp.int32), params=params, batch_stats=batch_stats,
                                opt_state=tx.init(params))


def model_from_state(graphdef: nnx.GraphDef, state: TrainState, *, num_refinement_stages: int | None = None,
                     training: bool = False) -> PoseNet:
    """A float32 PoseNet with the state's weights (eval mode by default), optionally with fewer stages.

    The original evaluates its 3-stage run with 1 refinement stage (the later stages are discarded).
    """
    trained = nnx.merge(graphdef, state.params, state.batch_stats)
    k = trained.num_refinement_stages if num_refinement_stages is None else num_refinement_stages
    arrays = {key: np.asarray(jax.device_get(var.get_value())) for key, var in weights.variables(trained).items()
              if not (m := re.match(r'refinement_stages\.(\d+)\.', key)) or int(m.group(1)) < k}
    model = weights.empty_model(k, **weights.model_size(trained))
    weights.assign(model, arrays, 'training state')
    return model.set_training(training)


# --------------------------------------------------------------------------------------- step

def train_step(graphdef: nnx.GraphDef, tx: optax.GradientTransformation, state: TrainState, batches: dict):
    """One iteration: forward/backward over ``batches_per_iter`` batches, then one optimizer update.

    ``batches``: dict of arrays with a leading accumulation axis (K, B, ...). As the original, each
    batch's loss is divided by K and the gradients are summed; BatchNorm statistics update on each.
    Returns (new state, metrics): 'loss' and the per-stage losses (averaged over the K batches, as the
    original accumulates ``loss.item() / batches_per_iter``).
    """
    num_batches = batches['image'].shape[0]

    def batch_loss(params, batch_stats, batch):
        # copy: fresh Variables at this trace level (BatchNorm mutates them; the inputs come from scan).
        model = nnx.merge(graphdef, params, batch_stats, copy=True)
        total, per_stage = loss_fn(model(batch['image']), batch['heatmaps'], batch['pafs'], batch['mask'])
        return total / num_batches, (per_stage, nnx.state(model, nnx.BatchStat))

    grad_fn = jax.value_and_grad(batch_loss, has_aux=True)
    # A Python loop, unrolled at trace time (K is 1 or 2 in practice): under lax.scan XLA:CPU ran the
    # convolutions about 20x slower.
    grads, batch_stats, per_stage = None, state.batch_stats, []
    for index in range(num_batches):
        batch = jax.tree.map(lambda array: array[index], batches)
        (_, (losses, batch_stats)), batch_grads = grad_fn(state.params, batch_stats, batch)
        grads = batch_grads if grads is None else jax.tree.map(jnp.add, grads, batch_grads)
        per_stage.append(losses)
    per_stage = {name: jnp.stack([losses[name] for losses in per_stage]) for name in per_stage[0]}
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    metrics = {name: jnp.mean(values) for name, values in per_stage.items()}
    metrics['loss'] = sum(metrics.values())
    new_state = state.replace(step=state.step + 1, params=params, batch_stats=batch_stats, opt_state=opt_state)
    return new_state, metrics


def make_mesh(devices=None) -> Mesh:
    """A 1-d mesh over all devices of all processes: the batch is split along 'data'."""
    devices = jax.devices() if devices is None else devices
    return Mesh(np.asarray(devices), (DATA_AXIS,))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P())


def batch_sharding(mesh: Mesh) -> NamedSharding:
    """Arrays (K, B, ...): the accumulation axis K unsharded, the batch axis B along 'data'."""
    return NamedSharding(mesh, P(None, DATA_AXIS))


def jit_train_step(graphdef, tx, mesh: Mesh):
    """``train_step`` compiled for the mesh: state replicated and donated, batches sharded."""
    return jax.jit(functools.partial(train_step, graphdef, tx),
                   in_shardings=(replicated(mesh), batch_sharding(mesh)),
                   out_shardings=(replicated(mesh), replicated(mesh)), donate_argnums=(0,))


def replicate_state(state: TrainState, mesh: Mesh) -> TrainState:
    """Places (copies of) the state on every device; works across hosts (all hold the same values)."""
    return jax.jit(lambda s: s, out_shardings=replicated(mesh))(state)


def global_batch(local_batches: list[dict], mesh: Mesh) -> dict:
    """Stacks this process's K batches to (K, B_local, ...) and assembles the global (K, B, ...) arrays."""
    sharding = batch_sharding(mesh)
    return {key: jax.make_array_from_process_local_data(
        sharding, np.stack([np.asarray(b[key], np.float32) for b in local_batches]))
        for key in ('image', 'heatmaps', 'pafs', 'mask')}


# --------------------------------------------------------------------------------------- data

class TrainData(NamedTuple):
    """The training stream: ``batches(start_batch)`` yields this process's batches (dicts of arrays
    'image', 'heatmaps', 'pafs', 'mask') from batch number ``start_batch`` on, forever."""
    num_examples: int
    batches: Callable[[int], Iterator[dict]]


def steps_per_epoch(num_examples: int, global_batch_size: int, batches_per_iter: int = 1) -> int:
    """Iterations per epoch as the original counts them.

    Its DataLoader yields ceil(N / B) batches per epoch (the last one smaller) and it steps after every
    ``batches_per_iter`` batches; the partial accumulation left at an epoch's end is dropped.
    """
    return max(1, math.ceil(num_examples / global_batch_size) // batches_per_iter)


def coco_train_data(config) -> TrainData:
    """The tf.data COCO pipeline (lwop_jax.data.pipeline), one shard per process."""
    from lwop_jax.data import pipeline  # lazy: TensorFlow is heavy and only training needs it
    labels = pipeline.load_training_labels(config.train_labels, config.train_images)
    local_batch_size = config.batch_size // jax.process_count()

    def batches(start_batch):
        dataset = pipeline.make_train_dataset(
            labels, config.train_images, batch_size=local_batch_size, crop_size=config.crop_size,
            stride=config.stride, sigma=config.sigma, paf_thickness=config.paf_thickness, seed=config.seed,
            augment=config.augment, max_rotate_degree=config.max_rotate_degree, shuffle=config.shuffle,
            process_index=jax.process_index(),
            process_count=jax.process_count(), start_step=start_batch,
            num_parallel_calls=config.num_parallel_calls if config.num_parallel_calls > 0 else None)
        return dataset.as_numpy_iterator()

    return TrainData(num_examples=len(labels), batches=batches)


def _take(iterator, count):
    try:
        return [next(iterator) for _ in range(count)]
    except StopIteration:
        raise RuntimeError('the training data ran out; the pipeline must repeat forever') from None


# -------------------------------------------------------------------------------------- model

def create_model(config, *, load_init_weights: bool = True) -> PoseNet:
    """A PoseNet with the configured compute dtype, initialised as ``config.init_from`` says."""
    dtypes = {'float32': None, 'bfloat16': jnp.bfloat16}
    if config.compute_dtype not in dtypes:
        raise ValueError(f'compute_dtype must be one of {sorted(dtypes)}, not {config.compute_dtype!r}')
    model = PoseNet(num_refinement_stages=config.num_refinement_stages, num_channels=config.num_channels,
                    backbone_width=config.backbone_width, backbone_depth=config.backbone_depth,
                    dtype=dtypes[config.compute_dtype],
                    rngs=nnx.Rngs(config.seed))
    if not load_init_weights:
        return model
    if config.init_from and config.from_mobilenet:
        logging.info(weights.init_backbone_from_mobilenet(model, config.init_from))
    elif config.init_from:
        init_weights_from(model, config.init_from)
    elif config.from_mobilenet:
        raise ValueError('from_mobilenet=True needs init_from = the MobileNet ImageNet file')
    return model


def init_weights_from(model: PoseNet, path) -> None:
    """Weights (only) from a torch .pth or an orbax checkpoint, as the original ``--weights-only``.

    Refinement stages the source lacks keep their initialisation (stage 3 of the recipe adds two);
    extra source stages are ignored. Anything else missing or mis-shaped is an error (the original only
    warned).
    """
    source = weights.load_any(path)
    target = weights.variables(model)
    arrays = {key: np.asarray(var.get_value()) for key, var in weights.variables(source).items() if key in target}
    missing = sorted(set(target) - set(arrays))
    not_stages = [key for key in missing if not key.startswith('refinement_stages.')]
    if not_stages:
        raise weights.WeightsError(f'{path}: lacks {not_stages[:8]} ({len(not_stages)} tensors)')
    weights.assign(model, arrays, str(path), strict=False)
    new_stages = sorted({'.'.join(key.split('.')[:2]) for key in missing})
    logging.info('initialised %d tensors from %s%s', len(arrays), path,
                 f'; {", ".join(new_stages)} keep their initialisation' if new_stages else '')


# -------------------------------------------------------------------------------- checkpoints

def make_checkpoint_manager(workdir, config):
    import orbax.checkpoint as ocp
    options = ocp.CheckpointManagerOptions(max_to_keep=config.keep_checkpoints or None, create=True,
                                           enable_async_checkpointing=config.async_checkpointing)
    return ocp.CheckpointManager(pathlib.Path(workdir).absolute() / 'checkpoints', options=options,
                                 item_names=('model', 'meta', 'train_state', 'data'))


def _model_tree(graphdef, state: TrainState):
    """The ``model`` item, as weights.save_model writes it: params and BatchNorm statistics."""
    return nnx.to_pure_dict(nnx.merge_state(state.params, state.batch_stats))


def save_checkpoint(manager, graphdef, state: TrainState, data_position: dict, config) -> None:
    """Saves at ``state.step``: ``model`` + ``meta`` (loadable by weights.load_any), ``train_state``
    (iteration and optimizer state) and ``data`` (position of the data stream)."""
    import orbax.checkpoint as ocp
    step = int(jax.device_get(state.step))
    meta = {'format': weights.FORMAT_NAME, 'version': weights.FORMAT_VERSION,
            'num_refinement_stages': config.num_refinement_stages, 'step': step, **weights.model_size(config),
            'eval_num_refinement_stages': config.eval_num_refinement_stages or config.num_refinement_stages}
    train_state = {'step': state.step, 'opt_state': _opt_leaves(state.opt_state)}
    manager.save(step, args=ocp.args.Composite(
        model=ocp.args.StandardSave(_model_tree(graphdef, state)), meta=ocp.args.JsonSave(meta),
        train_state=ocp.args.StandardSave(train_state), data=ocp.args.JsonSave(data_position)))


def _opt_leaves(opt_state) -> dict:
    # The optimizer state holds nnx.State trees; its leaves, in pytree order, restore into a fresh
    # state's structure, which keeps the checkpoint independent of optax/nnx container types.
    return {f'{i:04d}': leaf for i, leaf in enumerate(jax.tree.leaves(opt_state))}


def restore_checkpoint(manager, graphdef, state: TrainState, mesh: Mesh) -> tuple[TrainState, dict]:
    """The latest checkpoint restored into ``state``'s structure, replicated over ``mesh``."""
    import orbax.checkpoint as ocp
    step = manager.latest_step()
    sharding = replicated(mesh)

    def abstract(tree):
        return jax.tree.map(lambda x: jax.ShapeDtypeStruct(np.shape(x), x.dtype, sharding=sharding), tree)

    model_tree = _model_tree(graphdef, state)
    train_state = {'step': state.step, 'opt_state': _opt_leaves(state.opt_state)}
    restored = manager.restore(step, args=ocp.args.Composite(
        model=ocp.args.StandardRestore(abstract(model_tree)), train_state=ocp.args.StandardRestore(abstract(train_state)),
        data=ocp.args.JsonRestore()))
    model = nnx.merge(graphdef, state.params, state.batch_stats)
    model_state = nnx.state(model)
    nnx.replace_by_pure_dict(model_state, restored['model'])
    nnx.update(model, model_state)
    _, params, batch_stats = nnx.split(model, nnx.Param, nnx.BatchStat)
    leaves = [restored['train_state']['opt_state'][key] for key in sorted(restored['train_state']['opt_state'])]
    opt_state = jax.tree.unflatten(jax.tree.structure(state.opt_state), leaves)
    new_state = TrainState(step=restored['train_state']['step'], params=params, batch_stats=batch_stats,
                           opt_state=opt_state)
    return new_state, dict(restored['data'])


# --------------------------------------------------------------------------------- monitoring

class Monitor:
    """TensorBoard event files (process 0 only) through tf.summary; a no-op when disabled.

    Writes with ``tf.summary.write`` and the scalars/images plugin metadata, the exact records
    ``tf.summary.scalar``/``image`` produce, because those two need the ``tensorboard`` package at
    write time; only viewing the logs needs it (``pip install tensorboard``).
    """

    def __init__(self, workdir, enabled: bool):
        self.writer = None
        if enabled and jax.process_index() == 0:
            import tensorflow as tf
            from tensorflow.core.framework import summary_pb2
            tf.config.set_visible_devices([], 'GPU')  # TF must not take the accelerator's memory
            self._tf = tf
            self._metadata = {plugin: summary_pb2.SummaryMetadata(
                plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name=plugin))
                for plugin in ('scalars', 'images')}
            self.writer = tf.summary.create_file_writer(str(pathlib.Path(workdir) / 'tensorboard'))

    def scalars(self, step: int, values: dict):
        if self.writer is not None:
            with self.writer.as_default(step=step):
                for name, value in values.items():
                    self._tf.summary.write(name, self._tf.constant(float(value), self._tf.float32),
                                           metadata=self._metadata['scalars'])

    def image(self, step: int, name: str, image: np.ndarray):
        """``image``: (H, W, 3) floats in [0, 1]."""
        if self.writer is not None:
            tf = self._tf
            pixels = np.clip(np.round(np.asarray(image) * 255), 0, 255).astype(np.uint8)
            png = tf.image.encode_png(pixels)
            record = tf.stack([tf.as_string(pixels.shape[1]), tf.as_string(pixels.shape[0]), png])
            with self.writer.as_default(step=step):
                tf.summary.write(name, record, metadata=self._metadata['images'])

    def flush(self):
        if self.writer is not None:
            self.writer.flush()


def heatmap_panel(image, target_heatmaps, predicted_heatmaps, stride: int) -> np.ndarray:
    """One picture: input (subsampled to map size) | target keypoints | predicted keypoints, RGB [0, 1].

    Keypoint panels show the max over the 18 keypoint channels (the background channel left out).
    """
    bgr = np.clip(np.asarray(image)[::stride, ::stride] * 256 + 128, 0, 255) / 255
    h, w = target_heatmaps.shape[:2]
    rgb = bgr[:h, :w, ::-1]
    panels = [np.repeat(np.clip(np.max(np.asarray(m)[..., :-1], axis=-1), 0, 1)[..., None], 3, axis=-1)
              for m in (target_heatmaps, predicted_heatmaps)]
    return np.concatenate([rgb] + panels, axis=1).astype(np.float32)


def default_evaluate_fn(config, workdir) -> Callable | None:
    """``model -> stats dict`` through lwop_jax.coco_eval.evaluate_model, or None (logged) if unavailable."""
    if not config.val_labels:
        logging.info('validation off: no val_labels configured')
        return None
    try:
        from lwop_jax.coco_eval import evaluate_model
    except ImportError as error:  # pycocotools missing (the [eval] extra)
        logging.warning('validation off: lwop_jax.coco_eval is not importable (%s)', error)
        return None
    output = str(pathlib.Path(workdir) / config.val_output_name) if config.val_output_name else None

    def evaluate(model):
        return evaluate_model(model, config.val_labels, config.val_images, output_path=output)
    return evaluate


class NonFiniteLossError(FloatingPointError):
    """Training stopped on a NaN/inf loss; the message names the iteration and the last good checkpoint."""


# --------------------------------------------------------------------------------------- loop

def maybe_initialize_distributed(config) -> None:
    """Multi-host: ``jax.distributed.initialize()`` (cluster auto-detection) when configured."""
    if config.distributed and not getattr(maybe_initialize_distributed, 'done', False):
        jax.distributed.initialize()
        maybe_initialize_distributed.done = True


def total_train_steps(config, iterations_per_epoch: int) -> int:
    """``num_train_steps`` if set, capped by ``num_epochs`` epochs (the original stops after 280)."""
    by_epochs = config.num_epochs * iterations_per_epoch if config.num_epochs > 0 else None
    if config.num_train_steps > 0:
        return min(config.num_train_steps, by_epochs) if by_epochs else config.num_train_steps
    if by_epochs is None:
        raise ValueError('set num_train_steps or num_epochs')
    return by_epochs


def _check_batch_size(config, mesh: Mesh):
    if config.batch_size % jax.process_count():
        raise ValueError(f'batch_size {config.batch_size} is not divisible by the {jax.process_count()} processes')
    if config.batch_size % mesh.size:
        raise ValueError(f'batch_size {config.batch_size} is not divisible by the {mesh.size} devices')


def train_and_evaluate(config, workdir, *, train_data: TrainData | None = None,
                       evaluate_fn: Callable | None | str = 'default') -> TrainState:
    """Trains as ``config`` says, writing checkpoints and TensorBoard logs into ``workdir``.

    Resumes from the latest checkpoint in ``workdir/checkpoints`` when there is one (exactly:
    weights, BN statistics, optimizer, iteration, data position). ``train_data`` replaces the COCO
    pipeline (tests); ``evaluate_fn`` (model -> stats dict) replaces the COCO validation hook.
    Raises :class:`NonFiniteLossError` on a NaN/inf loss, keeping the last good checkpoint.
    Returns the final :class:`TrainState`.
    """
    maybe_initialize_distributed(config)
    workdir = pathlib.Path(workdir)
    mesh = make_mesh()
    _check_batch_size(config, mesh)
    train_data = train_data or coco_train_data(config)
    iterations_per_epoch = steps_per_epoch(train_data.num_examples, config.batch_size, config.batches_per_iter)
    num_steps = total_train_steps(config, iterations_per_epoch)
    logging.info('%d examples, %d iterations per epoch, %d iterations, %d devices, global batch %d x %d',
                 train_data.num_examples, iterations_per_epoch, num_steps, mesh.size, config.batch_size,
                 config.batches_per_iter)

    manager = make_checkpoint_manager(workdir, config)
    resuming = manager.latest_step() is not None
    model = create_model(config, load_init_weights=not resuming)  # a resumed run's weights come from its checkpoint
    tx = make_optimizer(model, base_lr=config.base_lr, weight_decay=config.weight_decay,
                        steps_per_epoch=iterations_per_epoch, drop_epochs=tuple(config.lr_drop_epochs),
                        drop_factor=config.lr_drop_factor)
    graphdef, state = create_train_state(model, tx)
    del model
    if resuming:
        state, data_position = restore_checkpoint(manager, graphdef, state, mesh)
        _check_data_position(data_position, config)
        logging.info('resumed from %s at iteration %d', manager.directory, int(state.step))
    else:
        state = replicate_state(state, mesh)
    start_step = int(jax.device_get(state.step))
    if evaluate_fn == 'default':
        evaluate_fn = default_evaluate_fn(config, workdir)
    try:
        state = _train_loop(config, workdir, graphdef, tx, state, mesh, manager, train_data, evaluate_fn,
                            start_step, num_steps)
    finally:
        manager.wait_until_finished()
        manager.close()
    return state


def _check_data_position(position: dict, config):
    if position.get('global_batch_size') not in (None, config.batch_size) or \
            position.get('batches_per_iter') not in (None, config.batches_per_iter):
        logging.warning('resuming with a different batch size (%s): the data stream will not continue exactly',
                        position)


def _train_loop(config, workdir, graphdef, tx, state, mesh, manager, train_data, evaluate_fn, start_step, num_steps):
    from tqdm import tqdm
    step_fn = jit_train_step(graphdef, tx, mesh)
    batches = train_data.batches(start_step * config.batches_per_iter)
    monitor = Monitor(workdir, config.tensorboard)
    is_main = jax.process_index() == 0
    progress = tqdm(total=num_steps, initial=start_step, desc='train', unit='it', disable=not is_main,
                    dynamic_ncols=True)
    pending = []  # (step, metrics on device) not yet checked for NaN/inf
    window = []   # host metrics since the last log line
    last_good_checkpoint = manager.latest_step()
    window_start = time.perf_counter()
    iterations_per_epoch = steps_per_epoch(train_data.num_examples, config.batch_size, config.batches_per_iter)

    def learning_rate(update_index):  # lr of the x1 groups, as optax computes it for that update
        return config.base_lr * float(epoch_lr_factor(update_index, iterations_per_epoch,
                                                      tuple(config.lr_drop_epochs), config.lr_drop_factor))

    def check(entries):
        for step, metrics in entries:
            host = jax.device_get(metrics)
            if not all(np.isfinite(v) for v in host.values()):
                raise NonFiniteLossError(
                    f'non-finite loss at iteration {step}: {_format(host)}; training stopped. '
                    + (f'The last good checkpoint is iteration {last_good_checkpoint} in {manager.directory}.'
                       if last_good_checkpoint is not None else 'No checkpoint was written yet.'))
            window.append(host)

    for step in range(start_step + 1, num_steps + 1):
        local = _take(batches, config.batches_per_iter)
        state, metrics = step_fn(state, global_batch(local, mesh))
        # Check the previous iteration's metrics: it is finished by now, so this does not stall dispatch.
        check(pending)
        pending = [(step, metrics)]
        progress.update(1)
        on_log = step % config.log_after == 0 or step == num_steps
        on_checkpoint = step % config.checkpoint_after == 0 or step == num_steps
        on_val = evaluate_fn is not None and config.val_after > 0 and (step % config.val_after == 0 or step == num_steps)
        on_image = config.image_summary_after > 0 and step % config.image_summary_after == 0
        if on_log or on_checkpoint or on_val or on_image:
            check(pending)  # never save or report a state produced by a non-finite loss
            pending = []
        if on_log and window:
            elapsed = time.perf_counter() - window_start
            means = {k: float(np.mean([w[k] for w in window])) for k in window[0]}
            means['learning_rate'] = learning_rate(step - 1)
            rate = len(window) / elapsed if elapsed > 0 else 0.0
            monitor.scalars(step, {f'train/{k}': v for k, v in means.items()}
                            | {'train/iterations_per_sec': rate,
                               'train/images_per_sec': rate * config.batch_size * config.batches_per_iter})
            progress.set_postfix(loss=f'{means["loss"]:.2f}', lr=f'{means["learning_rate"]:.2e}')
            logging.info('iteration %d: %s (%.2f it/s)', step, _format(means), rate)
            window.clear()
            window_start = time.perf_counter()
        if on_image:
            _image_summary(monitor, graphdef, state, local[0], config, step)
        if on_checkpoint:
            save_checkpoint(manager, graphdef, state, {
                'batches_consumed': step * config.batches_per_iter, 'global_batch_size': config.batch_size,
                'batches_per_iter': config.batches_per_iter, 'seed': config.seed}, config)
            last_good_checkpoint = step
        if on_val:
            _validate(evaluate_fn, graphdef, state, config, monitor, step)
        if on_log:
            monitor.flush()
    check(pending)
    progress.close()
    monitor.flush()
    return state


def _format(values: dict) -> str:
    return ', '.join(f'{k} {v:.4g}' for k, v in values.items())


def _image_summary(monitor, graphdef, state, local_batch, config, step):
    if monitor.writer is None:
        return
    model = model_from_state(graphdef, state)
    image = np.asarray(local_batch['image'][:1], np.float32)
    predicted = np.asarray(model(jnp.asarray(image))[-1][0][0])
    monitor.image(step, 'train/heatmaps_input_target_predicted',
                  heatmap_panel(image[0], local_batch['heatmaps'][0], predicted, config.stride))


def _validate(evaluate_fn, graphdef, state, config, monitor, step):
    model = model_from_state(graphdef, state, num_refinement_stages=config.eval_num_refinement_stages or None)
    logging.info('validation at iteration %d (%d refinement stage(s))...', step, model.num_refinement_stages)
    stats = evaluate_fn(model)
    stats = {k: float(v) for k, v in (stats or {}).items() if np.isscalar(v)}
    logging.info('validation at iteration %d: %s', step, _format(stats))
    monitor.scalars(step, {f'val/{k}': v for k, v in stats.items()})


# ------------------------------------------------------------------------------------- recipe

def run_recipe(config, workdir) -> None:
    """Runs the stages of a recipe config (configs/coco_recipe.py) one after another.

    Stage i trains in ``workdir/<stage name>``; a stage whose ``init_from`` is empty starts from the
    final checkpoint of the stage before it. Each stage resumes on its own, so rerunning the same
    command continues where it stopped.
    """
    previous = None
    for name in config.stage_order:
        stage = config.stages[name]
        stage_dir = pathlib.Path(workdir) / name
        if not stage.init_from:
            if previous is None:
                raise ValueError(f'recipe stage {name} has no init_from and no previous stage')
            with stage.unlocked():
                stage.init_from = str((previous / 'checkpoints').absolute())
        logging.info('recipe stage %s -> %s (init_from %s)', name, stage_dir, stage.init_from)
        train_and_evaluate(stage, stage_dir)
        previous = stage_dir
