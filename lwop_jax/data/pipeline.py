"""tf.data training input pipeline: COCO labels -> augmented crops, heatmaps, PAFs and loss mask.

Per sample (:mod:`lwop_jax.data.samples`, NumPy + OpenCV; one ``tf.numpy_function`` call makes a whole
batch, batches are made by a parallel, deterministic ``map``):

1. draw the augmentation (:mod:`lwop_jax.data.augment`) from a Generator seeded with
   ``(seed, epoch, index in epoch)``, so a sample never depends on the parallelism or on what ran
   before it;
2. decode the JPEG with OpenCV, at 1/2, 1/4 or 1/8 size when the sampled scale allows it
   (``decode_reduction``), the reduction folded into the warp matrix;
3. warp the image once, the full-resolution crowd mask once (only if the image has crowd
   regions; otherwise the mask is all ones, as the original's would be), move the keypoints;
4. render the targets (:func:`lwop_jax.data.targets.render_targets`) and the stride-8 mask
   (:func:`lwop_jax.data.targets.downsample_mask` of the uint8 crop mask, as the original).

Sample order: one infinite stream of global positions k = 0, 1, 2, ...; position k is sample
``k % N`` of epoch ``k // N`` (N labels), which is label ``permutation(seed, epoch)[k % N]`` (identity
without shuffle). Global batch t is positions ``[t G, (t + 1) G)`` with ``G = batch_size *
process_count``; host p takes ``[t G + p B, t G + (p + 1) B)``. Batches therefore span epoch
boundaries, and ``start_step`` only moves the start of a counter (nothing is decoded to skip).

Unreadable or missing images: the sample falls back to the next label (index + 1, + 2, ... in the
label list) whose image decodes, with the same random draws; each bad file is logged once (WARNING,
logger ``lwop_jax.data.pipeline``) and counted in a :class:`SkippedImages` (pass your own
``skipped_images`` to read the count; the dataset also carries it as ``dataset.skipped_images``).
The fallback is deterministic as long as a file is either always or never readable.

Interpreter exit: tf.data keeps calling the Python producer from its own threads to refill its
buffers; a call that is in flight when Python finalizes aborts the process ("terminate called
without an active exception") or hangs it. An ``atexit`` hook therefore switches every producer to
returning empty placeholders and waits until no call is in flight (:mod:`lwop_jax.data.exit_guard`).
"""

import logging
import threading

import numpy as np
import tensorflow as tf

from lwop_jax.data import augment as augmentation
from lwop_jax.data.exit_guard import EXIT_GUARD
from lwop_jax.data.samples import LabelFileSource, SampleConfig, UnreadableImage, process_sample

logger = logging.getLogger(__name__)

# Seed-sequence tags keep the shuffle and the per-sample streams apart.
_SHUFFLE_STREAM, _SAMPLE_STREAM = 0, 1


class SkippedImages:
    """Thread-safe record of the images the pipeline could not read (each logged once)."""

    def __init__(self):
        self._lock = threading.Lock()
        self._names = {}

    def add(self, name, reason):
        with self._lock:
            if name in self._names:
                return
            self._names[name] = reason
        logger.warning(
            'skipping unreadable training image %s (%s); its samples fall back to the next readable label', name, reason
        )

    def __contains__(self, name):
        return name in self._names

    @property
    def count(self):
        """Number of distinct image files skipped so far."""
        return len(self._names)

    @property
    def names(self):
        with self._lock:
            return dict(self._names)


# ------------------------------------------------------------------------------- sample order
def sample_rng(seed, epoch, index):
    """The Generator of sample ``index`` (position in its epoch) of ``epoch``."""
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, _SAMPLE_STREAM, epoch, index])))


class EpochOrder:
    """Global stream position -> (epoch, index in epoch, label index); permutations cached."""

    def __init__(self, num_labels, seed, shuffle):
        self.num_labels, self.seed, self.shuffle = num_labels, seed, shuffle
        self._lock = threading.Lock()
        self._permutations = {}

    def permutation(self, epoch):
        with self._lock:
            if epoch not in self._permutations:
                if len(self._permutations) > 4:  # old epochs are never visited again
                    self._permutations.pop(min(self._permutations))
                rng = np.random.default_rng(np.random.SeedSequence([self.seed, _SHUFFLE_STREAM, epoch]))
                self._permutations[epoch] = rng.permutation(self.num_labels)
            return self._permutations[epoch]

    def locate(self, position):
        epoch, index = divmod(int(position), self.num_labels)
        label_index = int(self.permutation(epoch)[index]) if self.shuffle else index
        return epoch, index, label_index


class SampleProducer:
    """Global position -> processed sample, with the fallback for unreadable images."""

    def __init__(self, source, config, seed, shuffle, skipped_images):
        self.source, self.config, self.seed = source, config, seed
        self.order = EpochOrder(len(source), seed, shuffle)
        self.skipped = skipped_images

    def __call__(self, position):
        with EXIT_GUARD:
            if EXIT_GUARD.exiting:
                return self.placeholder()
            return self.produce(position)

    def placeholder(self, batch_size=None):
        """Zero-filled outputs of one sample or a batch (only ever produced at exit)."""
        size, map_size = self.config.crop_size, self.config.map_size
        lead = () if batch_size is None else (int(batch_size),)
        return (
            np.zeros(lead + (size, size, 3), np.uint8),
            np.zeros(lead + (map_size, map_size, self.config.num_heatmaps), np.float32),
            np.zeros(lead + (map_size, map_size, self.config.num_pafs), np.float32),
            np.zeros(lead + (map_size, map_size), np.float32),
        )

    def produce_batch(self, positions):
        """(B,) global positions -> the four outputs stacked: (B, S, S, 3) uint8, (B, s, s, 19),
        (B, s, s, 38), (B, s, s) float32."""
        with EXIT_GUARD:
            batch = self.placeholder(len(positions))
            for row, position in enumerate(positions):
                if EXIT_GUARD.exiting:
                    break
                for output, value in zip(batch, self.produce(position)):
                    output[row] = value
            return batch

    def produce(self, position):
        """The sample at global stream ``position`` (see the module docstring)."""
        epoch, index, label_index = self.order.locate(position)
        for attempt in range(len(self.source)):
            candidate = (label_index + attempt) % len(self.source)
            name = self.source.name(candidate)
            if name in self.skipped:
                continue
            try:
                return process_sample(self.source.load(candidate), sample_rng(self.seed, epoch, index), self.config)
            except UnreadableImage as error:
                self.skipped.add(name, str(error))
        raise RuntimeError(
            f'none of the {len(self.source)} training images could be read (e.g. {self.source.name(label_index)})'
        )


def host_positions(start_step, batch_size, process_index, process_count):
    """Infinite tf.data.Dataset of this host's global stream positions, from batch start_step on."""
    if not 0 <= process_index < process_count:
        raise ValueError(f'process_index {process_index} not in [0, {process_count})')
    global_batch = batch_size * process_count
    counters = tf.data.Dataset.range(start_step * batch_size, np.iinfo(np.int64).max)

    def to_position(counter):
        step, slot = counter // batch_size, counter % batch_size
        return step * global_batch + process_index * batch_size + slot

    return counters.map(to_position)


def make_dataset_from_source(
    source,
    *,
    batch_size,
    config=SampleConfig(),
    seed=0,
    shuffle=True,
    process_index=0,
    process_count=1,
    start_step=0,
    num_parallel_calls=None,
    skipped_images=None,
):
    """The training dataset over any source with ``__len__``, ``name(i)`` and ``load(i) ->
    SampleInputs`` (see :func:`make_train_dataset` for what it yields)."""
    if batch_size < 1:
        raise ValueError(f'batch_size must be >= 1, got {batch_size}')
    skipped_images = skipped_images if skipped_images is not None else SkippedImages()
    producer = SampleProducer(source, config, seed, shuffle, skipped_images)
    size, map_size = config.crop_size, config.map_size

    def load_batch(positions):
        # One Python call per batch, filling preallocated batch arrays: per-sample numpy_function
        # calls and tf.data's batch copy cost ~0.5 ms CPU per sample, as much as a warp.
        image, heatmaps, pafs, mask = tf.numpy_function(
            producer.produce_batch, [positions], (tf.uint8, tf.float32, tf.float32, tf.float32), stateful=False
        )
        return {
            'image': (tf.cast(tf.ensure_shape(image, (batch_size, size, size, 3)), tf.float32) - 128.0) / 256.0,
            'heatmaps': tf.ensure_shape(heatmaps, (batch_size, map_size, map_size, config.num_heatmaps)),
            'pafs': tf.ensure_shape(pafs, (batch_size, map_size, map_size, config.num_pafs)),
            'mask': tf.ensure_shape(mask, (batch_size, map_size, map_size)),
        }

    parallel = tf.data.AUTOTUNE if num_parallel_calls is None else num_parallel_calls
    dataset = host_positions(start_step, batch_size, process_index, process_count)
    dataset = dataset.batch(batch_size, drop_remainder=True)
    dataset = dataset.map(load_batch, num_parallel_calls=parallel, deterministic=True).prefetch(tf.data.AUTOTUNE)
    dataset.skipped_images = skipped_images
    return dataset


def make_train_dataset(labels, images_dir, *, batch_size, **settings):
    """Infinite, deterministic training dataset of this host's part of every global batch.

    Args:
        labels: list of prepared labels (:func:`lwop_jax.data.coco.prepare_annotations`).
        images_dir: folder of the labels' 'img_paths'.
        batch_size: per-host batch B; a global batch is B * process_count samples.
        **settings: the keywords of :func:`dataset_with_settings`, which holds their defaults (crop_size
            368, stride 8, sigma 7, paf_thickness 1, seed 0, process_index/process_count 0/1, ...); among them:
        augment: False -> scale to the label's normalised size, crop centred on objpos, nothing random.
        shuffle: a new permutation of the labels per epoch (deterministic given seed).
        start_step: first global batch to produce; equals dropping that many batches, at no cost.
        num_parallel_calls: batches made in parallel (None = AUTOTUNE); does not change the output.
            The per-sample Python work shares one GIL (OpenCV's decode/warp release it), so expect
            a few cores' worth per process, not dozens.
        max_rotate_degree: Rotate's range, +-degrees (the original: 40).
        reduced_decode: decode JPEGs at 1/2..1/8 size when the sampled total scale is <= 1/2..1/8
            (libjpeg DCT scaling averages blocks, so such crops are a little smoother than the
            original's plain bilinear downscale; False reproduces that).
        skipped_images: a :class:`SkippedImages` to record unreadable images in (else a new one,
            available as ``dataset.skipped_images``).
        schema, layout: the keypoint schema the targets hold and where its keypoints are in the labels
            (:func:`lwop_jax.data.coco.load_training_set`); None: coco18 from COCO's keypoints.
    Returns:
        tf.data.Dataset of dicts: 'image' (B, S, S, 3) float32 BGR (pixel - 128) / 256,
        'heatmaps' (B, S/8, S/8, K + 1) float32, 'pafs' (B, S/8, S/8, 2 L) float32 (coco18: 19, 38),
        'mask' (B, S/8, S/8) float32 (1 = use in the loss).
    """
    return dataset_with_settings(LabelFileSource(labels, images_dir), batch_size=batch_size, **settings)


def dataset_with_settings(
    source,
    *,
    batch_size,
    crop_size=368,
    stride=8,
    sigma=7.0,
    paf_thickness=1.0,
    seed=0,
    augment=True,
    shuffle=True,
    process_index=0,
    process_count=1,
    start_step=0,
    num_parallel_calls=None,
    reduced_decode=True,
    max_rotate_degree=40.0,
    skipped_images=None,
    schema=None,
    layout=None,
):
    """:func:`make_dataset_from_source` with the sample settings as keywords, as :func:`make_train_dataset`
    documents them: the one place that turns them into a :class:`SampleConfig` and that holds their
    defaults (the JSON and the TFDS sources both pass their settings through here)."""
    config = SampleConfig(
        crop_size=crop_size,
        stride=stride,
        sigma=sigma,
        paf_thickness=paf_thickness,
        augment=augment,
        reduced_decode=reduced_decode,
        augment_config=augmentation.AugmentConfig(max_rotate_degree=max_rotate_degree),
        **({'schema': schema} if schema else {}),
        **({'layout': layout} if layout else {}),
    )
    return make_dataset_from_source(
        source,
        batch_size=batch_size,
        config=config,
        seed=seed,
        shuffle=shuffle,
        process_index=process_index,
        process_count=process_count,
        start_step=start_step,
        num_parallel_calls=num_parallel_calls,
        skipped_images=skipped_images,
    )
