"""Training input pipeline throughput on the COCO mini images (full augmentation, crop 368).

Two measurements:

1. single-threaded (one core, ``cv2.setNumThreads(0)``): the per-sample stages of
   :func:`lwop_jax.data.samples.process_sample` timed one by one (read file, JPEG decode,
   augmentation draw, warp of image/mask/keypoints, targets = heatmaps + PAFs + stride-8 mask),
   with and without reduced-size JPEG decoding;
2. the full tf.data pipeline (parallel map, batching, prefetch) on all cores of this machine, from the
   JSON and image files and from TFDS records prepared from them (``config.data_source``).

"Per core" is given two ways: wall-clock samples/s divided by the cores, and samples per CPU-second
of this process (all its threads), which is what a core delivers when the machine is shared. The
original's data loader (``CocoTrainDataset.__getitem__`` with its transforms, same machine
type) does 127.9 samples/s on one worker (reference/baselines_original.md).

Usage: python benchmarks/bench_pipeline.py [--coco-mini DIR] [--samples N] [--batches N] [--smoke]

--smoke: a few samples and batches, so that the tests run it (tests/test_benchmarks_smoke.py); its figures mean
nothing.
"""

import argparse
import collections
import os
import pathlib
import statistics
import tempfile
import time

import cv2

from lwop_jax.data import augment, coco, pipeline, samples
from lwop_jax.data.coco import convert_keypoints
from lwop_jax.data.targets import render_targets

ORIGINAL_SAMPLES_PER_S = 127.9
DEFAULT_COCO_MINI = pathlib.Path(__file__).resolve().parents[2] / 'shared' / 'data' / 'coco_val_mini'


def timed_sample(source, index, rng, config, times):
    """process_sample, stage by stage, adding each stage's seconds to ``times``."""
    clock = time.perf_counter
    start = clock()
    inputs = source.load(index)
    after_read = clock()
    label = inputs.label
    width, height = int(label['img_width']), int(label['img_height'])
    params = samples.sample_params(label, rng, config)
    reduction = samples.decode_reduction(params.scale, config.reduced_decode)
    after_draw = clock()
    image = samples.decode_image(inputs.image_bytes, width, height, reduction)
    after_decode = clock()
    full_mask = inputs.crowd_mask() if inputs.crowd_mask is not None else None
    keypoints = convert_keypoints(inputs.keypoints, width, height)
    crop, crop_mask, keypoints = augment.warp_sample(
        image, full_mask, keypoints, params, config.crop_size, reduction=reduction
    )
    after_warp = clock()
    render_targets(keypoints, config.crop_size, config.crop_size, config.stride, config.sigma, config.paf_thickness)
    samples.stride_mask(crop_mask, config)
    after_targets = clock()
    for stage, seconds in (
        ('read file', after_read - start),
        ('draw augmentation', after_draw - after_read),
        ('JPEG decode', after_decode - after_draw),
        ('warp', after_warp - after_decode),
        ('targets', after_targets - after_warp),
    ):
        times[stage] += seconds
    return reduction


def single_threaded(labels, images_dir, num_samples, reduced_decode):
    cv2.setNumThreads(0)
    source = samples.LabelFileSource(labels, images_dir)
    config = samples.SampleConfig(reduced_decode=reduced_decode)
    for index in range(len(labels)):  # warm-up (page cache, lazy imports)
        timed_sample(source, index, pipeline.sample_rng(99, 0, index), config, collections.Counter())
    times, reductions = collections.Counter(), collections.Counter()
    for position in range(num_samples):
        index = position % len(labels)
        reductions[timed_sample(source, index, pipeline.sample_rng(0, 0, position), config, times)] += 1
    # The real thing end to end, for comparison with the sum of the stages.
    start, start_cpu = time.perf_counter(), time.process_time()
    for position in range(num_samples):
        samples.process_sample(source.load(position % len(labels)), pipeline.sample_rng(0, 0, position), config)
    return times, reductions, time.perf_counter() - start, time.process_time() - start_cpu


def report_single(name, times, reductions, end_to_end, end_to_end_cpu, num_samples):
    total = sum(times.values())
    print(
        f'\n[{name}] single-threaded, {num_samples} samples: {num_samples / total:.1f} samples/s (wall, stages); '
        f'process_sample end to end {num_samples / end_to_end:.1f} samples/s wall, '
        f'{num_samples / end_to_end_cpu:.1f} samples per CPU-second '
        f'= {num_samples / end_to_end_cpu / ORIGINAL_SAMPLES_PER_S:.2f}x the original'
    )
    for stage, seconds in times.items():
        print(f'  {stage:18s} {seconds / num_samples * 1e3:6.3f} ms  {seconds / total:6.1%}')
    print('  decode reductions: ' + ', '.join(f'1/{r}: {n}' for r, n in sorted(reductions.items())))
    warp_targets = times['warp'] + times['targets']
    print(
        f'  warp + targets = {warp_targets / num_samples * 1e3:.3f} ms vs JPEG decode '
        f'{times["JPEG decode"] / num_samples * 1e3:.3f} ms'
    )


def full_pipeline(dataset, batch_size, batches, passes=3, warmup=5):
    iterator = iter(dataset)
    for _ in range(warmup):
        next(iterator)
    rates, cpu_rates = [], []
    for _ in range(passes):
        start, start_cpu = time.perf_counter(), time.process_time()
        for _ in range(batches):
            next(iterator)
        rates.append(batches * batch_size / (time.perf_counter() - start))
        cpu_rates.append(batches * batch_size / (time.process_time() - start_cpu))
    return rates, cpu_rates


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--coco-mini', type=pathlib.Path, default=DEFAULT_COCO_MINI)
    parser.add_argument('--samples', type=int, default=600)
    parser.add_argument('--batch-size', type=int, default=16)
    parser.add_argument('--batches', type=int, default=25)
    parser.add_argument('--smoke', action='store_true', help='a few samples and batches (the tests run it)')
    args = parser.parse_args()
    passes, warmup = 3, 5
    if args.smoke:
        args.samples, args.batch_size, args.batches, passes, warmup = 4, 2, 1, 1, 1
    labels = coco.load_training_labels(
        args.coco_mini / 'person_keypoints_val2017_mini.json', args.coco_mini / 'val2017'
    )
    images_dir = args.coco_mini / 'val2017'
    cores = len(os.sched_getaffinity(0))
    print(f'load average before: {os.getloadavg()[0]:.2f}')
    print(
        f'COCO mini: {len(labels)} labels, crop 368, full augmentation; {cores} cores; '
        f'original: {ORIGINAL_SAMPLES_PER_S} samples/s per core'
    )

    for name, reduced in (('reduced decode', True), ('full-size decode', False)):
        report_single(name, *single_threaded(labels, images_dir, args.samples, reduced), args.samples)

    with tempfile.TemporaryDirectory() as tfds_dir:
        from lwop_jax.data import tfds_coco

        builder = tfds_coco.prepared_builder(
            args.coco_mini / 'person_keypoints_val2017_mini.json', images_dir, tfds_dir
        )
        datasets = {
            'json': lambda: pipeline.make_train_dataset(labels, images_dir, batch_size=args.batch_size, seed=0),
            'tfds': lambda: tfds_coco.make_train_dataset_from_tfds(builder, batch_size=args.batch_size, seed=0),
        }
        for cv2_threads in (0, cores):
            cv2.setNumThreads(cv2_threads)
            for source, make_dataset in datasets.items():
                rates, cpu_rates = full_pipeline(make_dataset(), args.batch_size, args.batches, passes, warmup)
                rate, cpu_rate = statistics.median(rates), statistics.median(cpu_rates)
                print(
                    f'\n[tf.data pipeline, {source} source] batch {args.batch_size}, AUTOTUNE map, {cores} cores, '
                    f'cv2.setNumThreads({cv2_threads}): {rate:.1f} samples/s wall = {rate / cores:.1f} per core; '
                    f'{cpu_rate:.1f} samples per CPU-second (all threads) = '
                    f'{cpu_rate / ORIGINAL_SAMPLES_PER_S:.2f}x the original per core '
                    f'(wall passes: {", ".join(f"{r:.0f}" for r in rates)})'
                )
    print(f'load average after: {os.getloadavg()[0]:.2f} (other processes share these cores)')


if __name__ == '__main__':
    main()
