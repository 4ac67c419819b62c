"""The training state and step: one jitted iteration (gradient accumulation, one optimizer update) over a
batch sharded along a 1-d device mesh of all processes, parameters replicated.

BatchNorm statistics are computed over the *global* batch (sync BN), so results do not depend on the
device count; the original's ``DataParallel`` normalised each GPU's slice separately.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx, struct
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from lwop_jax.model.posenet import PoseNet
from lwop_jax.model.variables import assign, empty_model, keep_refinement_stages, model_size, variables
from lwop_jax.training.loss import loss_fn

DATA_AXIS = 'data'


@struct.dataclass
class TrainState:
    """Everything that changes during training; a pytree (jit/donate/shard as a whole)."""

    step: jax.Array  # iterations (optimizer steps) done
    params: nnx.State
    batch_stats: nnx.State
    opt_state: optax.OptState


def create_train_state(model: PoseNet, tx: optax.GradientTransformation) -> tuple[nnx.GraphDef, TrainState]:
    """Splits a model (put in training mode) into its static graph and a :class:`TrainState`."""
    model.set_training(True)
    graphdef, params, batch_stats = nnx.split(model, nnx.Param, nnx.BatchStat)
    return graphdef, TrainState(
        step=jnp.zeros((), jnp.int32), params=params, batch_stats=batch_stats, opt_state=tx.init(params)
    )


def model_from_state(
    graphdef: nnx.GraphDef, state: TrainState, *, num_refinement_stages: int | None = None, training: bool = False
) -> PoseNet:
    """A float32 PoseNet with the state's weights (eval mode by default), optionally with fewer stages.

    The original evaluates its 3-stage run with 1 refinement stage (the later stages are discarded).
    """
    trained = nnx.merge(graphdef, state.params, state.batch_stats)
    k = trained.num_refinement_stages if num_refinement_stages is None else num_refinement_stages
    arrays = keep_refinement_stages(
        {key: np.asarray(jax.device_get(var.get_value())) for key, var in variables(trained).items()}, k
    )
    model = empty_model(k, **model_size(trained))
    assign(model, arrays, 'training state')
    model.keypoint_schema = getattr(trained, 'keypoint_schema', None)  # validation decodes with it
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
        batch = jax.tree.map(lambda array, index=index: array[index], batches)
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
    return jax.jit(
        functools.partial(train_step, graphdef, tx),
        in_shardings=(replicated(mesh), batch_sharding(mesh)),
        out_shardings=(replicated(mesh), replicated(mesh)),
        donate_argnums=(0,),
    )


def replicate_state(state: TrainState, mesh: Mesh) -> TrainState:
    """Places (copies of) the state on every device; works across hosts (all hold the same values)."""
    return jax.jit(lambda s: s, out_shardings=replicated(mesh))(state)


def global_batch(local_batches: list[dict], mesh: Mesh) -> dict:
    """Stacks this process's K batches to (K, B_local, ...) and assembles the global (K, B, ...) arrays."""
    sharding = batch_sharding(mesh)
    return {
        key: jax.make_array_from_process_local_data(
            sharding, np.stack([np.asarray(b[key], np.float32) for b in local_batches])
        )
        for key in ('image', 'heatmaps', 'pafs', 'mask')
    }
