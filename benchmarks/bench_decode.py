"""Benchmark: vectorised ``decode`` vs a straightforward loop implementation of the same algorithm.

Runs on the decoder fixture (``decode_reference.npz``): the full-resolution oracle maps of the 4
COCO mini images and their noisy variants (rebuilt from the README recipe), and two crowded maps
built from them (oracle windows tiled 2x2 and 3x3 to about 900x900, plus the same noise recipe:
about 9000 peaks and 300 people). Both implementations go from maps to COCO keypoints + scores;
their outputs are asserted bit-equal (and equal to the fixture where it has them) before timing.
They then alternate in one process; medians are reported.

The loop version is written the way the algorithm reads: per channel, the 4-neighbour peak mask
with NumPy (as the original does), then Python loops for the peak NMS (with an early exit once
peaks are 6 columns apart), for every candidate limb (10 float32 samples each, no early exit),
for the connection NMS and for the pose assembly.

    python benchmarks/bench_decode.py [--shared PATH] [--cases fixture|crowd|all] [--repeats N]
                                      [--crowd-repeats N] [--fast-runs N]
"""

import argparse
import json
import math
import pathlib
import statistics
import sys
import time

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
from lwop_jax.inference.decode import decode, extract_peaks, group_keypoints, to_coco_keypoints
from lwop_jax.skeleton import BODY_PARTS_KPT_IDS, BODY_PARTS_PAF_IDS, INTERNAL_TO_COCO

CASES = ('c000', 'c001', 'c002', 'c003')
F32 = np.float32


# ------------------------------------------------------------------------- loop implementation
def loop_extract_keypoints(heatmap, first_id):
    """One channel (H, W): threshold a copy, strict 4-neighbour maxima, greedy NMS in x order.
    Returns a list of (x, y, score, id)."""
    heatmap = heatmap.copy()
    heatmap[heatmap < 0.1] = 0
    padded = np.pad(heatmap, 1)
    center = padded[1:-1, 1:-1]
    peaks = (
        (center > padded[1:-1, :-2])
        & (center > padded[1:-1, 2:])
        & (center > padded[:-2, 1:-1])
        & (center > padded[2:, 1:-1])
    )
    ys, xs = np.nonzero(peaks)
    points = sorted(zip(xs.tolist(), ys.tolist()), key=lambda p: p[0])  # stable: (x, y)
    suppressed = [False] * len(points)
    keypoints = []
    for i, (x, y) in enumerate(points):
        if suppressed[i]:
            continue
        for j in range(i + 1, len(points)):
            if points[j][0] - x >= 6:
                break
            if math.sqrt((points[j][0] - x) ** 2 + (points[j][1] - y) ** 2) < 6:
                suppressed[j] = True
        keypoints.append((x, y, float(heatmap[y, x]), first_id + len(keypoints)))
    return keypoints


def loop_limb_score(pafs, channels, a, b, min_paf_score):
    """10 float32 samples from a to b; returns (mean passing dot, passing count)."""
    ax, ay, bx, by = F32(a[0]), F32(a[1]), F32(b[0]), F32(b[1])
    vx, vy = bx - ax, by - ay
    denominator = np.sqrt(vx * vx + vy * vy) + F32(1e-6)
    ux, uy = vx / denominator, vy / denominator
    sx, sy = F32(1 / 9) * vx, F32(1 / 9) * vy
    dots = np.zeros(10, np.float32)
    passed = 0
    for k in range(10):
        x = int(np.round(sx * F32(k) + ax))
        y = int(np.round(sy * F32(k) + ay))
        dot = pafs[y, x, channels[0]] * ux + pafs[y, x, channels[1]] * uy
        if dot > min_paf_score:
            dots[k] = dot
            passed += 1
    # np.sum: the same float32 summation order as the original's row sums.
    return float(dots.sum()) / (passed + 1e-6), passed


def loop_connections(kpts_a, kpts_b, pafs, channels, min_paf_score):
    """Scored candidates (b-major, a-minor, as the original), then best-first NMS."""
    candidates, scores = [], []
    for j, b in enumerate(kpts_b):
        for i, a in enumerate(kpts_a):
            score, passed = loop_limb_score(pafs, channels, a, b, min_paf_score)
            if score > 0 and passed / 10 > 0.8:
                candidates.append((i, j))
                scores.append(score)
    connections, used_a, used_b = [], set(), set()
    for t in np.array(scores).argsort()[::-1]:
        i, j = candidates[t]
        if i not in used_a and j not in used_b:
            connections.append((kpts_a[i][3], kpts_b[j][3], scores[t]))
            used_a.add(i)
            used_b.add(j)
    return connections


def loop_group_keypoints(keypoints_by_type, pafs, min_paf_score=0.05):
    all_keypoints = [kpt for kpts in keypoints_by_type for kpt in kpts]
    poses = []
    for part_id, ((type_a, type_b), channels) in enumerate(zip(BODY_PARTS_KPT_IDS, BODY_PARTS_PAF_IDS)):
        kpts_a, kpts_b = keypoints_by_type[type_a], keypoints_by_type[type_b]
        if not kpts_a or not kpts_b:
            continue
        for id_a, id_b, score in loop_connections(kpts_a, kpts_b, pafs, channels, min_paf_score):
            if part_id in (17, 18):
                for pose in poses:
                    if pose[type_a] == id_a and pose[type_b] == -1:
                        pose[type_b] = id_b
                    elif pose[type_b] == id_b and pose[type_a] == -1:
                        pose[type_a] = id_a
                continue
            matched = False
            for pose in poses:
                if pose[type_a] == id_a:
                    pose[type_b] = id_b
                    pose[19] += 1
                    pose[18] += all_keypoints[id_b][2] + score
                    matched = True
            if not matched:
                pose = [-1.0] * 20
                pose[type_a], pose[type_b] = id_a, id_b
                pose[19] = 2
                pose[18] = (all_keypoints[id_a][2] + all_keypoints[id_b][2]) + score
                poses.append(pose)
    poses = [p for p in poses if not (p[19] < 3 or p[18] / p[19] < 0.2)]
    return poses, all_keypoints


def loop_to_coco(poses, all_keypoints):
    coco_keypoints, scores = [], []
    for pose in poses:
        triples = [0.0] * 51
        for slot, coco in enumerate(INTERNAL_TO_COCO):
            if coco < 0 or pose[slot] == -1:
                continue
            x, y = all_keypoints[int(pose[slot])][:2]
            triples[3 * coco : 3 * coco + 3] = [x + 0.5, y + 0.5, 1]
        coco_keypoints.append(triples)
        scores.append(pose[18] * max(0, pose[19] - 1))
    return coco_keypoints, scores


def loop_decode(heatmaps, pafs):
    """Maps -> (keypoints by type, pose entries, COCO keypoints, scores)."""
    keypoints_by_type, total = [], 0
    for channel in range(18):
        keypoints_by_type.append(loop_extract_keypoints(heatmaps[:, :, channel], total))
        total += len(keypoints_by_type[-1])
    poses, all_keypoints = loop_group_keypoints(keypoints_by_type, pafs)
    return (keypoints_by_type, poses) + loop_to_coco(poses, all_keypoints)


def fast_decode(heatmaps, pafs):
    return to_coco_keypoints(decode(heatmaps, pafs))


# ------------------------------------------------------------------------------------ harness
# Crowded stress cases: an oracle window (top, left, height, width) of a fixture image, tiled reps x reps,
# then the fixture's noise recipe (README section 6, step 5) with its own seed. 784x900 and 900x900 maps,
# about 9000 peaks and 300 people each: the loop version needs several minutes per run there.
CROWDS = {
    'crowd 2x2 c003': ('c003', (0, 95, 392, 450), 2, 2000),
    'crowd 3x3 c000': ('c000', (62, 170, 300, 300), 3, 2001),
}
NOISE_STD = 0.03


def add_noise(heatmaps, pafs, seed):
    """The fixture's noise recipe: RandomState(seed).normal(0, 0.03) float32, heatmaps then PAFs."""
    rs = np.random.RandomState(seed)
    noise_h = rs.normal(0.0, NOISE_STD, size=heatmaps.shape).astype(np.float32)
    noise_p = rs.normal(0.0, NOISE_STD, size=pafs.shape).astype(np.float32)
    return heatmaps + noise_h, pafs + noise_p, noise_h


def crowd_maps(data, case, window, reps, seed):
    """Oracle maps of fixture image `case` cut to window (top, left, height, width), tiled reps x reps
    (people repeat, PAFs and peaks included), plus noise. Returns (heatmaps, pafs), (H, W, 19) / (H, W, 38)."""
    top, left, height, width = window
    crop = (slice(top, top + height), slice(left, left + width))
    heatmaps = np.tile(data[f'{case}_heatmaps'][crop], (reps, reps, 1))
    pafs = np.tile(data[f'{case}_pafs'][crop], (reps, reps, 1))
    return add_noise(heatmaps, pafs, seed)[:2]


def load_maps(shared, which):
    """(label, heatmaps, pafs, reference dict or None) for the fixture's cases (oracle and noisy) and
    the crowded ones, as `which` ('fixture', 'crowd' or 'all') selects."""
    data = np.load(pathlib.Path(shared) / 'reference' / 'decode_reference.npz')
    out = []
    for case in CASES if which in ('fixture', 'all') else ():
        meta = json.loads(str(data[f'{case}_meta']))
        heatmaps, pafs = data[f'{case}_heatmaps'], data[f'{case}_pafs']
        noisy_h, noisy_p, noise_h = add_noise(heatmaps, pafs, meta['noise_seed'])
        assert noise_h.reshape(-1)[:5].tolist() == meta['noise_heatmaps_first5']
        for variant, h, p in (('oracle', heatmaps, pafs), ('noisy', noisy_h, noisy_p)):
            ref = {
                k: data[f'{case}_{variant}_{k}']
                for k in ('all_keypoints', 'kpt_counts', 'pose_entries', 'coco_keypoints', 'scores')
            }
            out.append((f'{case} {meta["image_id"]} {variant}', h, p, ref))
    for label, spec in CROWDS.items() if which in ('crowd', 'all') else ():
        out.append((label, *crowd_maps(data, *spec), None))
    return out


def check_equal(loop_output, heatmaps, pafs, ref=None):
    """Both implementations against each other and, where given, against the original's stored output.
    Returns (peaks, poses)."""
    by_type, loop_poses, loop_coco, loop_scores = loop_output
    all_keypoints, counts = extract_peaks(heatmaps)
    pose_entries, _ = group_keypoints(all_keypoints, counts, pafs)
    coco, scores = fast_decode(heatmaps, pafs)
    loop_all = np.array([k for kpts in by_type for k in kpts], np.float64).reshape(-1, 4)
    np.testing.assert_array_equal(loop_all, all_keypoints)
    np.testing.assert_array_equal([len(k) for k in by_type], counts)
    np.testing.assert_array_equal(np.array(loop_poses, np.float64).reshape(-1, 20), pose_entries)
    np.testing.assert_array_equal(np.array(loop_coco, np.float64).reshape(-1, 51), coco)
    np.testing.assert_array_equal(np.array(loop_scores, np.float64), scores)
    if ref is not None:
        np.testing.assert_array_equal(all_keypoints, ref['all_keypoints'])
        np.testing.assert_array_equal(pose_entries, ref['pose_entries'])
        np.testing.assert_array_equal(coco, ref['coco_keypoints'])
        np.testing.assert_array_equal(scores, ref['scores'])
    return len(all_keypoints), len(pose_entries)


def timed(fn, *args):
    """(seconds, result) of one call."""
    start = time.perf_counter()
    result = fn(*args)
    return time.perf_counter() - start, result


def measure(heatmaps, pafs, ref, repeats, fast_runs):
    """Loop and vectorised runs alternating (outputs checked bit-equal on the first loop run).
    Returns (peaks, poses, loop ms median, vectorised ms median)."""
    fast_decode(heatmaps, pafs)  # warm-up
    loop_times, fast_times = [], []
    for repeat in range(repeats):
        seconds, loop_output = timed(loop_decode, heatmaps, pafs)
        loop_times.append(seconds)
        if repeat == 0:  # the loop version is slow: check its first timed run
            num_peaks, num_poses = check_equal(loop_output, heatmaps, pafs, ref)
        fast_times.extend(timed(fast_decode, heatmaps, pafs)[0] for _ in range(fast_runs))
    return num_peaks, num_poses, statistics.median(loop_times) * 1e3, statistics.median(fast_times) * 1e3


def main():
    root = pathlib.Path(__file__).resolve().parents[1]
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        '--shared',
        default=str(root.parent / 'shared'),
        help='folder holding reference/decode_reference.npz (default ../shared)',
    )
    parser.add_argument('--cases', choices=('fixture', 'crowd', 'all'), default='all', help='which maps (default all)')
    parser.add_argument(
        '--repeats', type=int, default=3, help='loop-version runs per fixture map (about 2 min each for all 8)'
    )
    parser.add_argument(
        '--crowd-repeats', type=int, default=1, help='loop-version runs per crowded map (3 to 6 min each)'
    )
    parser.add_argument('--fast-runs', type=int, default=5, help='vectorised runs after each loop run (alternating)')
    args = parser.parse_args()

    rows = []
    for label, heatmaps, pafs, ref in load_maps(args.shared, args.cases):
        repeats = args.repeats if ref is not None else args.crowd_repeats
        rows.append((label, heatmaps.shape[:2], *measure(heatmaps, pafs, ref, repeats, args.fast_runs)))
        print(f'{label:<22} done', file=sys.stderr, flush=True)

    print(
        f'decode: maps -> COCO keypoints, medians ({args.repeats} loop runs per fixture map, '
        f'{args.crowd_repeats} per crowded map, {args.fast_runs} vectorised runs after each); outputs bit-equal'
    )
    print(f'| {"map":<22} | H x W     | peaks | poses | loop ms  | vectorised ms | speed-up |')
    print(f'|{"-" * 24}|-----------|-------|-------|----------|---------------|----------|')
    for label, (h, w), num_peaks, num_poses, loop_ms, fast_ms in rows:
        print(
            f'| {label:<22} | {f"{h}x{w}":<9} | {num_peaks:5d} | {num_poses:5d} | {loop_ms:8.1f} | {fast_ms:13.2f} '
            f'| {loop_ms / fast_ms:7.1f}x |'
        )
    geo_mean = math.exp(statistics.mean(math.log(r[4] / r[5]) for r in rows))
    print(f'lowest per-map speed-up: {min(r[4] / r[5] for r in rows):.1f}x; geometric mean: {geo_mean:.1f}x')


if __name__ == '__main__':
    main()
