"""The training stream: from a config to this process's batches, through one function for every caller.

:func:`train_data_from_config` maps the config's data keys onto the tf.data pipeline
(:mod:`lwop_jax.data.pipeline`) in one place: ``train.py`` and the demo both build their input this way.
``config.data_source`` picks where samples come from: 'json' reads the COCO JSON and the image files,
'tfds' reads TFDS records prepared once from them (:mod:`lwop_jax.data.tfds_coco`). Both give the same
samples for the same seed.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from typing import NamedTuple

import jax
from jax.experimental import multihost_utils

from lwop_jax.data.coco import check_coco_files, load_training_set
from lwop_jax.errors import InputFileError, TrainingError
from lwop_jax.schema import KeypointSchema, load_schema
from lwop_jax.skeleton import COCO_KEYPOINT_NAMES

DATA_SOURCES = ('json', 'tfds')


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


def schema_of(config) -> KeypointSchema:
    """The run's keypoint schema: ``config.keypoint_schema``, a shipped name or a schema file."""
    return load_schema(config.get('keypoint_schema') or None)


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
    if config.data_source not in DATA_SOURCES:
        raise TrainingError(f'config.data_source: {config.data_source!r} is not one of {", ".join(DATA_SOURCES)}')
    if config.data_source == 'tfds':
        return _tfds_train_data(config)
    labels, layout = load_training_set(
        config.train_labels, config.train_images, config.label_net_input_size, schema_of(config)
    )
    from lwop_jax.data import pipeline  # TensorFlow (the [train] extra) loads only when training starts

    arguments = pipeline_arguments(config) | {'schema': schema_of(config), 'layout': layout}

    def batches(start_batch):
        dataset = pipeline.make_train_dataset(labels, config.train_images, start_step=start_batch, **arguments)
        return dataset.as_numpy_iterator()

    return TrainData(num_examples=len(labels), batches=batches)


def _tfds_train_data(config) -> TrainData:
    """The same stream from TFDS records, prepared on first use in ``config.tfds_data_dir`` (coco18 only:
    the records hold COCO's 17 keypoints, so the schema must take its keypoints from those)."""
    schema = schema_of(config)
    layout = schema.dataset_layout(COCO_KEYPOINT_NAMES, f'{config.train_labels} (as TFDS records)')
    check_coco_files(config.train_labels, config.train_images)
    from lwop_jax.data import tfds_coco  # TensorFlow Datasets (the [train] extra) loads only when training starts

    def prepare():
        return tfds_coco.prepared_builder(
            config.train_labels, config.train_images, config.tfds_data_dir or None, config.label_net_input_size
        )

    builder = _first_process_first(prepare)
    num_examples = builder.info.splits['train'].num_examples
    if not num_examples:
        raise InputFileError(f'{config.train_labels}: no person qualifies as a training sample')
    arguments = pipeline_arguments(config) | {'schema': schema, 'layout': layout}

    def batches(start_batch):
        dataset = tfds_coco.make_train_dataset_from_tfds(builder, split='train', start_step=start_batch, **arguments)
        return dataset.as_numpy_iterator()

    return TrainData(num_examples=num_examples, batches=batches)


def _first_process_first(function: Callable):
    """``function()`` on process 0 first (it writes the records into a possibly shared folder), then on the
    others, which find them there or, on a host that does not share the folder, write their own."""
    if jax.process_count() == 1:
        return function()
    result = function() if jax.process_index() == 0 else None
    multihost_utils.sync_global_devices('lwop_jax: TFDS records prepared by process 0')
    return result if result is not None else function()


def take(iterator, count: int) -> list:
    """The next ``count`` batches of a stream that must not end."""
    try:
        return [next(iterator) for _ in range(count)]
    except StopIteration:
        raise TrainingError('the training data ran out; the pipeline must repeat forever') from None
