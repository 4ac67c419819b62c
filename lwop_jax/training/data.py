"""The training stream: from a config to this process's batches, through one function for every caller.

:func:`train_data_from_config` maps the config's data keys onto the tf.data pipeline
(:mod:`lwop_jax.data.pipeline`) in one place: ``train.py`` and the demo both build their input this way.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from typing import NamedTuple

import jax

from lwop_jax.data.coco import load_training_labels
from lwop_jax.errors import TrainingError


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


def pipeline_arguments(config) -> dict:
    """The config's data keys as :func:`lwop_jax.data.pipeline.make_train_dataset` arguments (this
    process's share of the global batch)."""
    return dict(
        batch_size=config.batch_size // jax.process_count(),
        crop_size=config.crop_size,
        stride=config.stride,
        sigma=config.sigma,
        paf_thickness=config.paf_thickness,
        seed=config.seed,
        augment=config.augment,
        max_rotate_degree=config.max_rotate_degree,
        shuffle=config.shuffle,
        process_index=jax.process_index(),
        process_count=jax.process_count(),
        num_parallel_calls=config.num_parallel_calls if config.num_parallel_calls > 0 else None,
    )


def train_data_from_config(config) -> TrainData:
    """The tf.data COCO pipeline for ``config.train_labels`` / ``config.train_images``, one shard per process."""
    labels = load_training_labels(config.train_labels, config.train_images, net_input_size=config.label_net_input_size)
    from lwop_jax.data import pipeline  # TensorFlow (the [train] extra) loads only when training starts

    arguments = pipeline_arguments(config)

    def batches(start_batch):
        dataset = pipeline.make_train_dataset(labels, config.train_images, start_step=start_batch, **arguments)
        return dataset.as_numpy_iterator()

    return TrainData(num_examples=len(labels), batches=batches)


def take(iterator, count: int) -> list:
    """The next ``count`` batches of a stream that must not end."""
    try:
        return [next(iterator) for _ in range(count)]
    except StopIteration:
        raise TrainingError('the training data ran out; the pipeline must repeat forever') from None
