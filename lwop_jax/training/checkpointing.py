"""Training checkpoints: orbax CheckpointManager items ``model`` + ``meta`` (loadable as a model file),
``train_state`` (iteration and optimizer state) and ``data`` (the data stream's position), so that a
resumed run ends bit-identical to an uninterrupted one."""

from __future__ import annotations

import logging
import pathlib

import jax
import numpy as np
import orbax.checkpoint as ocp
from flax import nnx
from jax.experimental import multihost_utils
from jax.sharding import Mesh

from lwop_jax.checkpoints.orbax_io import FORMAT_NAME, FORMAT_VERSION
from lwop_jax.errors import ModelFileError
from lwop_jax.training.data import schema_of
from lwop_jax.training.model_init import network_size
from lwop_jax.training.step import TrainState, replicated

logger = logging.getLogger(__name__)


def make_checkpoint_manager(workdir, config):
    options = ocp.CheckpointManagerOptions(
        max_to_keep=config.keep_checkpoints or None, create=True, enable_async_checkpointing=config.async_checkpointing
    )
    return ocp.CheckpointManager(
        pathlib.Path(workdir).absolute() / 'checkpoints',
        options=options,
        item_names=('model', 'meta', 'train_state', 'data'),
    )


def _model_tree(graphdef, state: TrainState):
    """The ``model`` item, as orbax_io.save_model writes it: params and BatchNorm statistics."""
    return nnx.to_pure_dict(nnx.merge_state(state.params, state.batch_stats))


def save_checkpoint(manager, graphdef, state: TrainState, data_position: dict, config) -> None:
    """Saves at ``state.step``: ``model`` + ``meta`` (loadable by orbax_io.load_any), ``train_state``
    (iteration and optimizer state) and ``data`` (position of the data stream)."""
    step = int(jax.device_get(state.step))
    meta = {
        'format': FORMAT_NAME,
        'version': FORMAT_VERSION,
        'num_refinement_stages': config.num_refinement_stages,
        'step': step,
        **network_size(config),
        'keypoint_schema': schema_of(config).to_json(),
        'eval_num_refinement_stages': config.eval_num_refinement_stages or config.num_refinement_stages,
    }
    train_state = {'step': state.step, 'opt_state': _opt_leaves(state.opt_state)}
    manager.save(
        step,
        args=ocp.args.Composite(
            model=ocp.args.StandardSave(_model_tree(graphdef, state)),
            meta=ocp.args.JsonSave(meta),
            train_state=ocp.args.StandardSave(train_state),
            data=ocp.args.JsonSave(data_position),
        ),
    )


def _opt_leaves(opt_state) -> dict:
    # The optimizer state holds nnx.State trees; its leaves, in pytree order, restore into a fresh
    # state's structure, which keeps the checkpoint independent of optax/nnx container types.
    return {f'{i:04d}': leaf for i, leaf in enumerate(jax.tree.leaves(opt_state))}


def restore_checkpoint(manager, graphdef, state: TrainState, mesh: Mesh) -> tuple[TrainState, dict]:
    """The newest intact checkpoint restored into ``state``'s structure, replicated over ``mesh``.

    A newer checkpoint that cannot be read (a file missing or truncated, as a crash or a full disk
    leaves them) is moved aside to ``damaged-<step>`` in the same folder, and one warning line names it
    and the checkpoint used instead. ModelFileError when none is intact.
    """
    damaged = []
    for step in sorted(manager.all_steps(), reverse=True):
        try:
            restored = _restore_step(manager, step, graphdef, state, mesh)
        except Exception as exc:  # orbax and tensorstore raise many types for a damaged file
            damaged.append((step, ' '.join(f'{type(exc).__name__}: {exc}'.split())[:200]))
            continue
        if damaged:
            _set_aside(manager, [bad for bad, _ in damaged])
            logger.warning(
                '%s: checkpoint %s is damaged (%s); moved aside to damaged-%s, resuming from checkpoint %d',
                manager.directory, damaged[0][0], damaged[0][1], damaged[0][0], step,
            )  # fmt: skip
        return restored
    raise ModelFileError(
        f'{manager.directory}: no intact checkpoint to resume from (newest: {damaged[0][0]}: {damaged[0][1]})'
    )


def _set_aside(manager, steps) -> None:
    """Renames damaged step folders so that the manager (and a later save of the same step) skip them."""
    directory = pathlib.Path(manager.directory)
    if jax.process_index() == 0:
        for step in steps:
            (directory / str(step)).rename(directory / f'damaged-{step}')
    if jax.process_count() > 1:
        multihost_utils.sync_global_devices('lwop_jax: damaged checkpoints moved aside')
    manager.reload()


def _restore_step(manager, step: int, graphdef, state: TrainState, mesh: Mesh) -> tuple[TrainState, dict]:
    sharding = replicated(mesh)

    def abstract(tree):
        return jax.tree.map(lambda x: jax.ShapeDtypeStruct(np.shape(x), x.dtype, sharding=sharding), tree)

    model_tree = _model_tree(graphdef, state)
    train_state = {'step': state.step, 'opt_state': _opt_leaves(state.opt_state)}
    restored = manager.restore(
        step,
        args=ocp.args.Composite(
            model=ocp.args.StandardRestore(abstract(model_tree)),
            train_state=ocp.args.StandardRestore(abstract(train_state)),
            data=ocp.args.JsonRestore(),
        ),
    )
    model = nnx.merge(graphdef, state.params, state.batch_stats)
    model_state = nnx.state(model)
    nnx.replace_by_pure_dict(model_state, restored['model'])
    nnx.update(model, model_state)
    _, params, batch_stats = nnx.split(model, nnx.Param, nnx.BatchStat)
    leaves = [restored['train_state']['opt_state'][key] for key in sorted(restored['train_state']['opt_state'])]
    opt_state = jax.tree.unflatten(jax.tree.structure(state.opt_state), leaves)
    new_state = TrainState(
        step=restored['train_state']['step'], params=params, batch_stats=batch_stats, opt_state=opt_state
    )
    return new_state, dict(restored['data'])


def checkpoint_arrays(directory) -> dict[str, np.ndarray]:
    """Every array of one training checkpoint folder (``WORKDIR/checkpoints/<step>``) on the host, by item and
    path: weights and BatchNorm statistics (``model``), the iteration and each leaf of the optimizer state
    (``train_state``). What an exact comparison of two runs reads; needs no network or optimizer to restore into."""
    directory = pathlib.Path(directory)
    items = ('model', 'train_state')
    restore = {}
    for item in items:
        tree = ocp.PyTreeCheckpointHandler().metadata(directory / item)
        as_numpy = jax.tree.map(lambda _: ocp.RestoreArgs(restore_type=np.ndarray), getattr(tree, 'tree', tree))
        restore[item] = ocp.args.PyTreeRestore(restore_args=as_numpy)
    with ocp.Checkpointer(ocp.CompositeCheckpointHandler()) as checkpointer:
        restored = checkpointer.restore(directory, ocp.args.Composite(**restore))
    return {
        f'{item}{jax.tree_util.keystr(path)}': np.asarray(leaf)
        for item in items
        for path, leaf in jax.tree_util.tree_flatten_with_path(restored[item])[0]
    }
