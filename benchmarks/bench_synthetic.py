"""Benchmark: synthetic COCO person images per second on one core, with a per-stage split.

Pins the process to one CPU and OpenCV to one thread, renders images at 640 x 480 (default) and
reports end-to-end ``generate_dataset`` throughput (render + JPEG encode + atomic write + JSON) and
where the time of ``render_image`` goes (stages timed by wrapping the functions it calls).

    python benchmarks/bench_synthetic.py [--num-images N] [--width W] [--height H] [--max-people P]
"""

import argparse
import collections
import functools
import os
import pathlib
import sys
import tempfile
import time

import cv2

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
from lwop_jax import synthetic
from lwop_jax.synthetic import scene

TARGET_IMAGES_PER_SECOND = 50
# Stage name -> functions whose time counts for it (they do not nest), by their names in
# lwop_jax.synthetic.scene: render_image and its helpers call them through that module's globals.
STAGES = {
    'background': ('draw_background',),
    'crowd': ('draw_crowd',),
    'pose + placement': ('place_people',),
    'draw people': ('draw_figure',),
    'part masks': ('draw_part_map',),
    'keypoint flags': ('keypoint_flags',),
    'polygons, bbox': ('person_annotation', 'crowd_annotation'),
    'camera effects': ('apply_camera_effects',),
}


def pin_to_one_core():
    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    cv2.setNumThreads(1)


def timed_stages():
    """Wrap the stage functions; returns the {stage: seconds} they accumulate into. A stage called
    from inside another (the crowd draws people too) counts for the outer one."""
    totals = collections.defaultdict(float)
    active = []
    for stage, names in STAGES.items():
        for name in names:
            original = getattr(scene, name)

            @functools.wraps(original)
            def wrapper(*args, _original=original, _stage=stage, **kwargs):
                if active:
                    return _original(*args, **kwargs)
                active.append(_stage)
                start = time.perf_counter()
                try:
                    return _original(*args, **kwargs)
                finally:
                    totals[_stage] += time.perf_counter() - start
                    active.pop()

            setattr(scene, name, wrapper)
    return totals


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--num-images', type=int, default=300)
    parser.add_argument('--width', type=int, default=640)
    parser.add_argument('--height', type=int, default=480)
    parser.add_argument('--max-people', type=int, default=4)
    args = parser.parse_args()
    pin_to_one_core()
    size = dict(width=args.width, height=args.height, max_people=args.max_people)

    synthetic.render_image(0, **size)  # warm-up
    with tempfile.TemporaryDirectory() as folder:
        start, start_cpu = time.perf_counter(), time.process_time()
        synthetic.generate_dataset(folder, args.num_images, seed=0, **size)
        end_to_end, end_to_end_cpu = time.perf_counter() - start, time.process_time() - start_cpu

    totals = timed_stages()
    start = time.perf_counter()
    counts = collections.Counter()
    for index in range(args.num_images):
        image, annotations = synthetic.render_image(index, seed=0, **size)
        counts['people'] += sum(1 for a in annotations if not a['iscrowd'])
        counts['crowds'] += sum(1 for a in annotations if a['iscrowd'])
    render = time.perf_counter() - start
    start = time.perf_counter()
    for _ in range(50):
        cv2.imencode('.jpg', image, [cv2.IMWRITE_JPEG_QUALITY, synthetic.JPEG_QUALITY])
    encode = (time.perf_counter() - start) / 50

    n = args.num_images
    print(
        f'{n} images {args.width}x{args.height}, max {args.max_people} people, one core '
        f'(cpu {sorted(os.sched_getaffinity(0))}, OpenCV threads {cv2.getNumThreads()})'
    )
    print(f'annotated people per image {counts["people"] / n:.2f}, images with a crowd {counts["crowds"] / n:.0%}')
    print(
        f'generate_dataset (render + JPEG + write + JSON): {n / end_to_end:6.1f} images/s '
        f'({end_to_end / n * 1e3:.2f} ms/image; target >= {TARGET_IMAGES_PER_SECOND})'
    )
    # On a shared machine the wall clock also counts other processes' turns on this core.
    print(
        f"  per second of this process's CPU time:          {n / end_to_end_cpu:6.1f} images/s "
        f'(load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs)'
    )
    print(
        f'render_image only:                               {n / render:6.1f} images/s ({render / n * 1e3:.2f} ms/image)'
    )
    print('per-stage split of render_image, ms/image:')
    for stage in STAGES:
        print(f'  {stage:18s} {totals[stage] / n * 1e3:6.2f}')
    print(f'  {"other":18s} {(render - sum(totals.values())) / n * 1e3:6.2f}')
    print(f'  {"(JPEG encode)":18s} {encode * 1e3:6.2f}')


if __name__ == '__main__':
    main()
