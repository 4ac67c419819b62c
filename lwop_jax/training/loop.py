"""Training of Lightweight OpenPose (the original ``train.py``) in JAX: the entry point and its loop.

Layout follows the flax examples (imagenet): :func:`train_and_evaluate` builds everything from the
config and runs the loop; the pieces live beside it (loss, optimizer, step, data, model_init,
checkpointing, monitoring). What carries over from the original, and where this differs:

* Loss: the original ``l2_loss`` on heatmaps and PAFs of every stage, summed (:mod:`.loss`).
* Optimizer: Adam with the original's 13 parameter groups and MultiStepLR (:mod:`.optimizer`).
* Gradient accumulation (``batches_per_iter``): the original divides each batch's loss by
  ``batches_per_iter`` and sums the gradients; BatchNorm statistics update on every batch. One call
  of the step is one iteration (:mod:`.step`).
* Data parallelism: one mesh over all devices of all hosts, batch sharded, sync BatchNorm (:mod:`.step`).
* Resume is exact: parameters, BatchNorm statistics, optimizer state, iteration and data position
  are all in the orbax checkpoint (:mod:`.checkpointing`). (The original restarted the interrupted
  epoch from its beginning and stepped the scheduler again.)
"""

from __future__ import annotations

import logging
import pathlib
import sys
import time
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh
from tqdm import tqdm

from lwop_jax.errors import NonFiniteLossError, TrainingError
from lwop_jax.training.checkpointing import make_checkpoint_manager, restore_checkpoint, save_checkpoint
from lwop_jax.training.data import TrainData, steps_per_epoch, take, train_data_from_config
from lwop_jax.training.model_init import create_model
from lwop_jax.training.monitoring import Monitor, default_evaluate_fn, heatmap_panel
from lwop_jax.training.multihost import maybe_initialize_distributed
from lwop_jax.training.optimizer import epoch_lr_factor, make_optimizer
from lwop_jax.training.step import (
    TrainState,
    create_train_state,
    global_batch,
    jit_train_step,
    make_mesh,
    model_from_state,
    replicate_state,
)

logger = logging.getLogger(__name__)


def total_train_steps(config, iterations_per_epoch: int) -> int:
    """``num_train_steps`` if set, capped by ``num_epochs`` epochs (the original stops after 280)."""
    by_epochs = config.num_epochs * iterations_per_epoch if config.num_epochs > 0 else None
    if config.num_train_steps > 0:
        return min(config.num_train_steps, by_epochs) if by_epochs else config.num_train_steps
    if by_epochs is None:
        raise TrainingError('set num_train_steps or num_epochs')
    return by_epochs


def _check_batch_size(config, mesh: Mesh):
    if config.batch_size % jax.process_count():
        raise TrainingError(f'batch_size {config.batch_size} is not divisible by the {jax.process_count()} processes')
    if config.batch_size % mesh.size:
        raise TrainingError(f'batch_size {config.batch_size} is not divisible by the {mesh.size} devices')


def train_and_evaluate(
    config, workdir, *, train_data: TrainData | None = None, evaluate_fn: Callable | None | str = 'default'
) -> TrainState:
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
    train_data = train_data or train_data_from_config(config)
    iterations_per_epoch = steps_per_epoch(train_data.num_examples, config.batch_size, config.batches_per_iter)
    num_steps = total_train_steps(config, iterations_per_epoch)
    logger.info(
        '%d examples, %d iterations per epoch, %d iterations, %d devices, global batch %d x %d',
        train_data.num_examples,
        iterations_per_epoch,
        num_steps,
        mesh.size,
        config.batch_size,
        config.batches_per_iter,
    )

    manager = make_checkpoint_manager(workdir, config)
    resuming = manager.latest_step() is not None
    model = create_model(config, load_init_weights=not resuming)  # a resumed run's weights come from its checkpoint
    tx = make_optimizer(
        model,
        base_lr=config.base_lr,
        weight_decay=config.weight_decay,
        steps_per_epoch=iterations_per_epoch,
        drop_epochs=tuple(config.lr_drop_epochs),
        drop_factor=config.lr_drop_factor,
    )
    graphdef, state = create_train_state(model, tx)
    del model
    if resuming:
        state, data_position = restore_checkpoint(manager, graphdef, state, mesh)
        _check_data_position(data_position, config)
        _report_resume(int(jax.device_get(state.step)), manager)
    else:
        state = replicate_state(state, mesh)
    start_step = int(jax.device_get(state.step))
    if evaluate_fn == 'default':
        evaluate_fn = default_evaluate_fn(config, workdir)
    try:
        state = _train_loop(
            config, workdir, graphdef, tx, state, mesh, manager, train_data, evaluate_fn, start_step, num_steps
        )
    finally:
        manager.wait_until_finished()
        manager.close()
    return state


def _report_resume(step: int, manager) -> None:
    """One line on process 0, above the progress bar and with its prefix: shown by default, because a rerun
    that silently started over would look the same as one that continued."""
    if jax.process_index() == 0:
        checkpoint = pathlib.Path(manager.directory) / str(step)
        tqdm.write(f'train: resumed from iteration {step} (checkpoint {checkpoint})', file=sys.stderr)


def _check_data_position(position: dict, config):
    if position.get('global_batch_size') not in (None, config.batch_size) or position.get('batches_per_iter') not in (
        None,
        config.batches_per_iter,
    ):
        logger.warning('resuming with a different batch size (%s): the data stream will not continue exactly', position)


class _Metrics:
    """The step's losses on their way from the device: each iteration's are checked for NaN/inf one
    iteration late (by then the step has finished, so the check does not stall dispatch), then kept until
    the next log line averages them."""

    def __init__(self, manager):
        self.manager = manager
        self.last_good_checkpoint = manager.latest_step()
        self.pending = []  # (step, metrics on device) not yet checked
        self.window = []  # host metrics since the last log line
        self.window_start = time.perf_counter()

    def add(self, step: int, metrics) -> None:
        self.check_pending()
        self.pending = [(step, metrics)]

    def check_pending(self) -> None:
        """Raises NonFiniteLossError for a NaN/inf loss; never save or report a state produced by one."""
        for step, metrics in self.pending:
            host = jax.device_get(metrics)
            if not all(np.isfinite(v) for v in host.values()):
                last = self.last_good_checkpoint
                raise NonFiniteLossError(
                    f'non-finite loss at iteration {step}: {_format(host)}; training stopped. '
                    + (
                        f'The last good checkpoint is iteration {last} in {self.manager.directory}.'
                        if last is not None
                        else 'No checkpoint was written yet.'
                    )
                )
            self.window.append(host)
        self.pending = []

    def take_window(self) -> tuple[dict, float]:
        """(mean of each metric, iterations per second) since the last call."""
        elapsed = time.perf_counter() - self.window_start
        means = {k: float(np.mean([w[k] for w in self.window])) for k in self.window[0]}
        rate = len(self.window) / elapsed if elapsed > 0 else 0.0
        self.window.clear()
        self.window_start = time.perf_counter()
        return means, rate


def _events(config, step: int, num_steps: int, validating: bool) -> set[str]:
    """What happens after iteration ``step`` besides training: 'log', 'checkpoint', 'validate', 'image'."""
    last = step == num_steps
    events = set()
    if step % config.log_after == 0 or last:
        events.add('log')
    if step % config.checkpoint_after == 0 or last:
        events.add('checkpoint')
    if validating and config.val_after > 0 and (step % config.val_after == 0 or last):
        events.add('validate')
    if config.image_summary_after > 0 and step % config.image_summary_after == 0:
        events.add('image')
    return events


def _log(metrics: _Metrics, monitor, progress, config, step: int, iterations_per_epoch: int) -> None:
    means, rate = metrics.take_window()
    # lr of the x1 groups, as optax computed it for this update
    means['learning_rate'] = config.base_lr * float(
        epoch_lr_factor(step - 1, iterations_per_epoch, tuple(config.lr_drop_epochs), config.lr_drop_factor)
    )
    images_per_sec = rate * config.batch_size * config.batches_per_iter
    monitor.scalars(
        step,
        {f'train/{k}': v for k, v in means.items()}
        | {'train/iterations_per_sec': rate, 'train/images_per_sec': images_per_sec},
    )
    progress.set_postfix(loss=f'{means["loss"]:.2f}', lr=f'{means["learning_rate"]:.2e}')
    logger.info('iteration %d: %s (%.2f it/s)', step, _format(means), rate)


def _train_loop(config, workdir, graphdef, tx, state, mesh, manager, train_data, evaluate_fn, start_step, num_steps):
    step_fn = jit_train_step(graphdef, tx, mesh)
    batches = train_data.batches(start_step * config.batches_per_iter)
    monitor = Monitor(workdir, config.tensorboard)
    progress = tqdm(
        total=num_steps,
        initial=start_step,
        desc='train',
        unit='it',
        disable=jax.process_index() != 0,
        dynamic_ncols=True,
    )
    metrics = _Metrics(manager)
    iterations_per_epoch = steps_per_epoch(train_data.num_examples, config.batch_size, config.batches_per_iter)
    for step in range(start_step + 1, num_steps + 1):
        local = take(batches, config.batches_per_iter)
        state, step_metrics = step_fn(state, global_batch(local, mesh))
        metrics.add(step, step_metrics)
        progress.update(1)
        events = _events(config, step, num_steps, evaluate_fn is not None)
        if events:
            metrics.check_pending()
        if 'log' in events and metrics.window:
            _log(metrics, monitor, progress, config, step, iterations_per_epoch)
        if 'image' in events:
            _image_summary(monitor, graphdef, state, local[0], config, step)
        if 'checkpoint' in events:
            save_checkpoint(
                manager,
                graphdef,
                state,
                {
                    'batches_consumed': step * config.batches_per_iter,
                    'global_batch_size': config.batch_size,
                    'batches_per_iter': config.batches_per_iter,
                    'seed': config.seed,
                },
                config,
            )
            metrics.last_good_checkpoint = step
        if 'validate' in events:
            _validate(evaluate_fn, graphdef, state, config, monitor, step)
        if 'log' in events:
            monitor.flush()
    metrics.check_pending()
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
    monitor.image(
        step,
        'train/heatmaps_input_target_predicted',
        heatmap_panel(image[0], local_batch['heatmaps'][0], predicted, config.stride),
    )


def _validate(evaluate_fn, graphdef, state, config, monitor, step):
    if jax.process_index() != 0:  # process 0 scores a host copy of the model; the others go on training
        return
    model = model_from_state(graphdef, state, num_refinement_stages=config.eval_num_refinement_stages or None)
    logger.info('validation at iteration %d (%d refinement stage(s))...', step, model.num_refinement_stages)
    stats = evaluate_fn(model)
    stats = {k: float(v) for k, v in (stats or {}).items() if np.isscalar(v)}
    logger.info('validation at iteration %d: %s', step, _format(stats))
    monitor.scalars(step, {f'val/{k}': v for k, v in stats.items()})
