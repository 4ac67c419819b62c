"""Benchmark: vectorised ``render_targets`` vs a straightforward loop port of the original generators.

Runs on the 12 COCO mini samples of the reference fixture (``targets_reference.npz``), each cropped
to a 368 x 368 window around its main person (as training does), plus the full-size images and
synthetic crowded 368 x 368 crops (12 persons, every point inside). The two
implementations alternate in one process; outputs are asserted bit-equal before timing.

    python benchmarks/bench_targets.py [--shared PATH] [--repeats N]
"""

import argparse
import json
import math
import os
import pathlib
import statistics
import sys
import time

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
from lwop_jax.data.targets import render_targets
from lwop_jax.skeleton import NUM_KEYPOINTS, PAF_LIMBS

CROP = 368


# --------------------------------------------------------- loop port of the original generators
def loop_add_gaussian(keypoint_map, x, y, stride, sigma):
    """The original ``_add_gaussian``: per-cell Python loop on a float32 (h, w) map."""
    n_sigma = 4
    tl = [max(int(x - n_sigma * sigma), 0), max(int(y - n_sigma * sigma), 0)]
    map_h, map_w = keypoint_map.shape
    br = [min(int(x + n_sigma * sigma), map_w * stride), min(int(y + n_sigma * sigma), map_h * stride)]
    shift = stride / 2 - 0.5
    for map_y in range(tl[1] // stride, br[1] // stride):
        for map_x in range(tl[0] // stride, br[0] // stride):
            d2 = (map_x * stride + shift - x) * (map_x * stride + shift - x) + (map_y * stride + shift - y) * (
                map_y * stride + shift - y
            )
            exponent = d2 / 2 / sigma / sigma
            if exponent > 4.6052:
                continue
            keypoint_map[map_y, map_x] += math.exp(-exponent)
            if keypoint_map[map_y, map_x] > 1:
                keypoint_map[map_y, map_x] = 1


def loop_set_paf(paf_map, x_a, y_a, x_b, y_b, stride, thickness):
    """The original ``_set_paf``: per-cell Python loop on a float32 (2, h, w) map."""
    x_a, y_a, x_b, y_b = x_a / stride, y_a / stride, x_b / stride, y_b / stride
    x_ba, y_ba = x_b - x_a, y_b - y_a
    _, h_map, w_map = paf_map.shape
    x_min = int(max(min(x_a, x_b) - thickness, 0))
    x_max = int(min(max(x_a, x_b) + thickness, w_map))
    y_min = int(max(min(y_a, y_b) - thickness, 0))
    y_max = int(min(max(y_a, y_b) + thickness, h_map))
    norm_ba = (x_ba * x_ba + y_ba * y_ba) ** 0.5
    if norm_ba < 1e-7:
        return
    x_ba /= norm_ba
    y_ba /= norm_ba
    for y in range(y_min, y_max):
        for x in range(x_min, x_max):
            d = math.fabs((x - x_a) * y_ba - (y - y_a) * x_ba)
            if d <= thickness:
                paf_map[0, y, x] = x_ba
                paf_map[1, y, x] = y_ba


def loop_render_targets(persons, height, width, stride=8, sigma=7.0, thickness=1.0):
    """Loop port of ``_generate_keypoint_maps`` + ``_generate_paf_maps``; returns HWC like ours."""
    map_h, map_w = height // stride, width // stride
    keypoint_maps = np.zeros((NUM_KEYPOINTS + 1, map_h, map_w), dtype=np.float32)
    for k in range(NUM_KEYPOINTS):
        for person in persons:
            x, y, flag = person[k]
            if flag <= 1:
                loop_add_gaussian(keypoint_maps[k], x, y, stride, sigma)
    keypoint_maps[-1] = 1 - keypoint_maps.max(axis=0)
    paf_maps = np.zeros((2 * len(PAF_LIMBS), map_h, map_w), dtype=np.float32)
    for limb, (a, b) in enumerate(PAF_LIMBS):
        for person in persons:
            if person[a][2] <= 1 and person[b][2] <= 1:
                loop_set_paf(
                    paf_maps[2 * limb : 2 * limb + 2],
                    person[a][0],
                    person[a][1],
                    person[b][0],
                    person[b][1],
                    stride,
                    thickness,
                )
    return keypoint_maps.transpose(1, 2, 0), paf_maps.transpose(1, 2, 0)


# --------------------------------------------------------------------------------------- cases
def load_cases(reference):
    """[(name, persons list of (18, 3) float lists, height, width)]: crops, then full images."""
    data = np.load(reference / 'targets_reference.npz')
    crops, fulls = [], []
    for index, name in enumerate(data['sample_names']):
        if not str(name).startswith('coco_'):
            continue
        prefix = f's{index:03d}_'
        persons = np.concatenate([data[prefix + 'main_keypoints'][None], data[prefix + 'other_keypoints']])
        height, width = (int(v) for v in data[prefix + 'image_hw'])
        fulls.append((f'{name}_full', persons.tolist(), height, width))
        # A 368 x 368 window centred on the main person's bbox centre, as CropPad does (no jitter).
        bbox = json.loads(str(data[prefix + 'meta']))['bbox']
        left = int(bbox[0] + bbox[2] / 2 - CROP / 2)
        top = int(bbox[1] + bbox[3] / 2 - CROP / 2)
        shifted = persons.copy()
        shifted[..., 0] -= left
        shifted[..., 1] -= top
        crops.append((f'{name}_crop', shifted.tolist(), CROP, CROP))
    return crops, fulls


def synthetic_crowds(count=12, persons=12, seed=0):
    """Crowded 368 x 368 crops: `persons` people around random centres, all points inside."""
    rng = np.random.default_rng(seed)
    cases = []
    for index in range(count):
        centres = rng.uniform(40, CROP - 40, (persons, 1, 2))
        points = np.clip(centres + rng.normal(0, 30, (persons, NUM_KEYPOINTS, 2)), 0, CROP - 1)
        flags = rng.choice([0, 1, 1, 1], (persons, NUM_KEYPOINTS, 1)).astype(np.float64)
        cases.append((f'crowd{index}', np.concatenate([points, flags], axis=-1).tolist(), CROP, CROP))
    return cases


def time_call(function, *args):
    start = time.perf_counter()
    function(*args)
    return time.perf_counter() - start


def bench(cases, repeats):
    """Alternate loop port and vectorised version; return median seconds per pass over `cases`."""
    for name, persons, height, width in cases:
        ours = render_targets(persons, height, width)
        theirs = loop_render_targets(persons, height, width)
        for a, b, what in zip(ours, theirs, ('heatmaps', 'pafs')):
            assert a.shape == b.shape and np.array_equal(a, b), f'{name}: {what} differ'

    def run_all(function):
        return sum(time_call(function, p, h, w) for _, p, h, w in cases)

    loop_times, vector_times = [], []
    for _ in range(repeats):
        loop_times.append(run_all(loop_render_targets))
        vector_times.append(run_all(render_targets))
    return statistics.median(loop_times), statistics.median(vector_times)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default_shared = pathlib.Path(os.environ.get('LWOP_SHARED', pathlib.Path(__file__).resolve().parents[2] / 'shared'))
    parser.add_argument('--shared', type=pathlib.Path, default=default_shared)
    parser.add_argument('--repeats', type=int, default=15)
    args = parser.parse_args()
    reference = args.shared / 'reference'
    if not (reference / 'targets_reference.npz').exists():
        sys.exit(f'no targets_reference.npz under {reference}')
    crops, fulls = load_cases(reference)
    for label, cases in (
        (f'{CROP}x{CROP} crops', crops),
        ('full images', fulls),
        ('12-person crowds', synthetic_crowds()),
    ):
        loop_s, vector_s = bench(cases, args.repeats)
        n = len(cases)
        print(
            f'{label:>17} ({n} samples, outputs bit-equal): loop port {1e3 * loop_s / n:8.3f} ms/sample, '
            f'render_targets {1e3 * vector_s / n:7.3f} ms/sample, speed-up x{loop_s / vector_s:.1f} '
            f'(median of {args.repeats})'
        )


if __name__ == '__main__':
    main()
