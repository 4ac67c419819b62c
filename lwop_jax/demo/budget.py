"""Training within a time budget: a short calibration run times an iteration, then training resumes from its
checkpoint up to the iteration the rest of the budget allows (learning rate x0.333 once, at 90 % of it).

Each new training step is compiled in a child process into the persistent XLA cache first
(:func:`compile_in_child`), because on XLA:CPU a step runs slower in the process that compiled it.
"""

from __future__ import annotations

import logging
import multiprocessing
import pathlib
import shutil
import time
from concurrent.futures import ProcessPoolExecutor

import jax

from lwop_jax.training import host_heap, quiet
from lwop_jax.training.data import TrainData, steps_per_epoch, train_data_from_config
from lwop_jax.training.loop import train_and_evaluate


class TimedTrainData:
    """The config's training stream (:func:`~lwop_jax.training.data.train_data_from_config`, as train.py
    builds it), noting when the loop asks for each batch (when each iteration starts), so that the demo
    can time an iteration."""

    def __init__(self, config):
        self.data = train_data_from_config(config)
        self.request_times = []

    def batches(self, start_batch):
        for batch in self.data.batches(start_batch):
            self.request_times.append(time.perf_counter())
            yield batch

    def train_data(self) -> TrainData:
        return TrainData(num_examples=self.data.num_examples, batches=self.batches)


def enable_compilation_cache(cache_dir: pathlib.Path):
    """Persistent XLA cache: the second training call (the resume) reuses the first one's compiled step."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    jax.config.update('jax_compilation_cache_dir', str(cache_dir))
    jax.config.update('jax_persistent_cache_min_compile_time_secs', 0.5)
    jax.config.update('jax_persistent_cache_min_entry_size_bytes', 0)


def _compile_step(config, cache_dir: pathlib.Path, scratch: pathlib.Path) -> float:
    """Runs in a child process: one iteration of ``config`` from scratch in ``scratch``, so that the
    training step it compiles lands in the persistent XLA cache; returns the seconds it took."""
    start = time.perf_counter()
    host_heap.keep_freed_memory()
    shutil.rmtree(scratch, ignore_errors=True)  # a leftover would be resumed
    enable_compilation_cache(cache_dir)
    logging.getLogger().setLevel(logging.WARNING)
    with config.unlocked():
        config.num_train_steps, config.checkpoint_after, config.log_after = 1, 1, 1
    # Silent: its progress bar and TensorFlow's start-up lines would only clutter the demo's output; an
    # error still reaches the parent as an exception.
    with quiet.stderr_silenced():
        train_and_evaluate(config, scratch, train_data=TimedTrainData(config).train_data(), evaluate_fn=None)
    shutil.rmtree(scratch, ignore_errors=True)
    return time.perf_counter() - start


def compile_in_child(config, cache_dir: pathlib.Path) -> float:
    """Compiles ``config``'s training step in a separate process, into the persistent cache at
    cache_dir; the training call that follows loads it from there. Returns the seconds it took.

    Why: on XLA:CPU with host_heap.keep_freed_memory, steps run 20-30 % slower in a process that
    compiled the step than in one that loaded the same executable from the cache (500-iteration runs
    of the demo's step, alternating: 0.110-0.124 s against 0.086-0.097 s); malloc_trim after the
    compilation did not help. It needs the tf.data pipeline in the process: a bare loop of the same
    step on in-memory batches ran 0.095 / 0.093 s compiled in-process and 0.089 / 0.093 s loaded from
    the cache, in one process, alternating. The learning-rate drop is a constant of the compiled step,
    so each new drop iteration is a new compilation.
    """
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context('spawn')) as pool:
        return pool.submit(_compile_step, config, cache_dir, cache_dir.parent / 'compile_run').result()


def measured_pace(requests: list[float], call_start: float) -> tuple[float | None, float]:
    """(seconds per iteration, start-up seconds) of one training call from the times its batches were asked for.

    The pace is the mean over the last two thirds of the call's iterations: the first ones compile (or
    load the compiled step) and wait for the input pipeline's start-up, which is not the pace of a long
    call (they made a 30-step calibration read 0.15 s for a real 0.11 s); checkpoint saves later in the
    call make some iterations slower, and they count.
    """
    skip = max(1, len(requests) // 3)
    per_step = (requests[-1] - requests[skip]) / (len(requests) - 1 - skip) if len(requests) > skip + 1 else None
    startup = requests[0] - call_start if requests else 0.0
    return per_step, startup


def more_iterations(demo, done: int, remaining: float, per_step: float | None) -> int:
    """How many iterations the next call runs: ``demo.budget_fill`` of what the time left allows at the
    measured pace (planned a little short, the pace varies on a shared machine; a later call tops up),
    none when fewer than ``demo.min_more_steps``, at least up to ``demo.min_train_steps`` in all."""
    more = int(demo.budget_fill * remaining / per_step) if per_step and remaining > 0 else 0
    if more < demo.min_more_steps:
        more = 0
    return max(more, demo.min_train_steps - done)


def _set_call(config, target: int, drop_epoch: int) -> None:
    with config.unlocked():
        config.num_train_steps = target
        config.lr_drop_epochs = (drop_epoch,)


def train(config, workdir: pathlib.Path, cache_dir: pathlib.Path | None = None) -> dict:
    """Trains on ``config.train_labels`` for about ``config.demo.time_budget`` seconds; returns a summary dict.

    train_and_evaluate runs a fixed number of iterations, so the budget is spent in a few calls: a short
    calibration call, then calls that resume from the last checkpoint up to the iteration the rest of
    the budget allows at the pace the previous call measured (:func:`measured_pace`; the start-up is
    counted as overhead). At most ``demo.max_train_calls`` calls; at least ``demo.min_train_steps``
    iterations. With a cache_dir (the persistent XLA cache), each new step is compiled in a child
    process first (:func:`compile_in_child`); its time counts against the budget.
    """
    demo = config.demo
    data = TimedTrainData(config)
    iterations_per_epoch = steps_per_epoch(data.data.num_examples, config.batch_size, config.batches_per_iter)
    start = time.perf_counter()
    calls: list[dict] = []
    target, drop_epoch, compile_seconds = min(demo.calibration_steps, config.num_train_steps), 10**9, 0.0
    cap = config.num_train_steps
    while True:
        call_start, first = time.perf_counter(), len(data.request_times)
        if len(calls) == 1:
            # One x lr_drop_factor drop at demo.lr_drop_at of the iterations planned after the calibration
            # (the original's reference overfit run: one drop at 80 %); a top-up call keeps it where it is.
            drop_epoch = max(1, round(demo.lr_drop_at * target / iterations_per_epoch))
        _set_call(config, target, drop_epoch)
        if cache_dir is not None and len(calls) < 2:  # a top-up call reuses the second call's step
            compile_seconds = compile_in_child(config, cache_dir)
            print(f'   compiled the training step in a child process ({compile_seconds:.0f} s)', flush=True)
            call_start = time.perf_counter()
        train_and_evaluate(config, workdir, train_data=data.train_data(), evaluate_fn=None)
        done, now = target, time.perf_counter()
        per_step, startup = measured_pace(data.request_times[first:], call_start)
        calls.append(
            {
                'to_iteration': done,
                'seconds': round(now - call_start, 1),
                'seconds_per_iteration': per_step and round(per_step, 3),
            }
        )
        # After the calibration, the next call compiles its own step (the drop is a constant of it):
        # reserve as long as this call's compilation took.
        remaining = demo.time_budget - (now - start) - startup - (compile_seconds if len(calls) == 1 else 0)
        target = min(done + more_iterations(demo, done, remaining, per_step), cap)
        pace = f'{per_step:.2f} s per iteration' if per_step else 'too few iterations to time'
        last = target <= done or len(calls) >= demo.max_train_calls
        print(
            f'   call {len(calls)}: to iteration {done} in {now - call_start:.0f} s ({pace}); '
            + ('done' if last else f'resuming to iteration {target}'),
            flush=True,
        )
        if last:
            break
    return {
        'iterations': done,
        'seconds': time.perf_counter() - start,
        'calls': calls,
        'samples': done * config.batch_size,
        'num_train_labels': data.data.num_examples,
    }
