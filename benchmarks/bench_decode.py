"""Benchmark: vectorised ``decode`` vs a straightforward loop implementation of the same algorithm.

Runs on the decoder fixture (``decode_reference.npz``): the full-resolution oracle maps of the 4
COCO mini images and their noisy variants (rebuilt from the README recipe). Both implementations
go from maps to COCO keypoints + scores; their outputs are asserted bit-equal (and equal to the
fixture) before timing. They then alternate in one process; medians are reported.

The loop version is written the way the algorithm reads: per channel, the 4-neighbour peak mask
with NumPy (as the original does), then Python loops for the peak NMS (with an early exit once
peaks are 6 columns apart), for every candidate limb (10 float32 samples each, no early exit),
for the connection NMS and for the pose assembly.

    python benchmarks/bench_decode.py [--shared PATH] [--repeats N] [--fast-runs N]
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
def load_maps(shared):
    """(label, heatmaps, pafs, reference dict) for every case, oracle and noisy."""
    data = np.load(pathlib.Path(shared) / 'reference' / 'decode_reference.npz')
    out = []
    for case in CASES:
        meta = json.loads(str(data[f'{case}_meta']))
        heatmaps, pafs = data[f'{case}_heatmaps'], data[f'{case}_pafs']
        rs = np.random.RandomState(meta['noise_seed'])
        noise_h = rs.normal(0.0, 0.03, size=heatmaps.shape).astype(np.float32)
        noise_p = rs.normal(0.0, 0.03, size=pafs.shape).astype(np.float32)
        assert noise_h.reshape(-1)[:5].tolist() == meta['noise_heatmaps_first5']
        for variant, h, p in (('oracle', heatmaps, pafs), ('noisy', heatmaps + noise_h, pafs + noise_p)):
            ref = {
                k: data[f'{case}_{variant}_{k}']
                for k in ('all_keypoints', 'kpt_counts', 'pose_entries', 'coco_keypoints', 'scores')
            }
            out.append((f'{case} {meta["image_id"]} {variant}', h, p, ref))
    return out


def check_equal(loop_output, heatmaps, pafs, ref):
    """Both implementations against each other and against the original's stored output."""
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


def main():
    root = pathlib.Path(__file__).resolve().parents[1]
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        '--shared',
        default=str(root.parent / 'shared'),
        help='folder holding reference/decode_reference.npz (default ../shared)',
    )
    parser.add_argument(
        '--repeats', type=int, default=3, help='loop-version runs per map (about 2 min each for all 8 maps)'
    )
    parser.add_argument('--fast-runs', type=int, default=5, help='vectorised runs after each loop run (alternating)')
    args = parser.parse_args()

    rows = []
    for label, heatmaps, pafs, ref in load_maps(args.shared):
        fast_decode(heatmaps, pafs)  # warm-up
        loop_times, fast_times = [], []
        for repeat in range(args.repeats):
            seconds, loop_output = timed(loop_decode, heatmaps, pafs)
            loop_times.append(seconds)
            if repeat == 0:  # the loop version is slow: check its first timed run
                num_peaks, num_poses = check_equal(loop_output, heatmaps, pafs, ref)
            fast_times.extend(timed(fast_decode, heatmaps, pafs)[0] for _ in range(args.fast_runs))
        rows.append(
            (label, num_peaks, num_poses, statistics.median(loop_times) * 1e3, statistics.median(fast_times) * 1e3)
        )
        print(f'{label:<22} done', file=sys.stderr, flush=True)

    print(
        f'decode: maps -> COCO keypoints, medians ({args.repeats} loop runs, '
        f'{args.repeats * args.fast_runs} vectorised runs per map); outputs bit-equal'
    )
    print(f'| {"map":<22} | peaks | poses | loop ms | vectorised ms | speed-up |')
    print(f'|{"-" * 24}|-------|-------|---------|---------------|----------|')
    for label, num_peaks, num_poses, loop_ms, fast_ms in rows:
        print(
            f'| {label:<22} | {num_peaks:5d} | {num_poses:5d} | {loop_ms:7.1f} | {fast_ms:13.2f} '
            f'| {loop_ms / fast_ms:7.1f}x |'
        )
    loop_total = sum(r[3] for r in rows)
    fast_total = sum(r[4] for r in rows)
    geo_mean = math.exp(statistics.mean(math.log(r[3] / r[4]) for r in rows))
    print(
        f'| {"total (sum of medians)":<22} |       |       | {loop_total:7.1f} | {fast_total:13.2f} '
        f'| {loop_total / fast_total:7.1f}x |'
    )
    print(f'geometric mean of per-map speed-ups: {geo_mean:.1f}x')


if __name__ == '__main__':
    main()
