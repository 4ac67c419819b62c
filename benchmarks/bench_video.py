"""Pipelined vs sequential ``lwop infer``: frames per second of a video, images per second of a folder.

  python benchmarks/bench_video.py [--shared ../shared] [--model MODEL.onnx] [--backend onnxruntime]
                                   [--threads 2] [--frames 24] [--rounds 3] [--images 32] [--batch-size 4]
                                   [--smoke]

Video: a clip made here from the COCO mini images (each resized to 640x480 and panned 4 px a frame, mp4v),
run as ``lwop infer --video clip.mp4 --output-dir`` does (read, pre-process, network, decode, track and
smooth, draw, write the annotated mp4) with --no-pipeline and without, alternately, ``--rounds`` times each;
the JSON records of the two must be identical (tracked ids included). Folder: the four mini images copied
to ``--images`` files, run with batch size 1 and ``--batch-size`` (both pipelined, drawn images written),
alternately; the largest keypoint difference between the two is printed. Medians of the rounds.
Without --model, the trained reference checkpoint is converted to ONNX in a temporary cache. --smoke: a few
frames and images, one round (the tests run it, so that it cannot rot; its figures mean nothing).
"""

import argparse
import pathlib
import shutil
import statistics
import sys
import tempfile
import time

import cv2
import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bench_infer import load_average, onnx_model  # noqa: E402 (a sibling script: the same reference model, converted once)

CLIP_SIZE = (640, 480)  # width, height
STEP_PX = 4


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--shared', type=pathlib.Path, default=ROOT.parent / 'shared')
    parser.add_argument('--model', type=pathlib.Path, help='model file (default: convert the reference .pth)')
    parser.add_argument('--backend', default='onnxruntime', choices=('onnxruntime', 'openvino'))
    parser.add_argument('--threads', type=int, default=2, help='threads of the runtime')
    parser.add_argument('--height-size', type=int, default=256)
    parser.add_argument('--frames', type=int, default=24, help='frames of the clip per mini image')
    parser.add_argument('--rounds', type=int, default=3)
    parser.add_argument('--images', type=int, default=32, help='files in the folder (copies of the mini images)')
    parser.add_argument('--batch-size', type=int, default=4)
    parser.add_argument('--smoke', action='store_true', help='2 frames per image, 4 images, 1 round (the tests)')
    args = parser.parse_args()
    if args.smoke:
        args.frames, args.rounds, args.images, args.batch_size = 2, 1, 4, 2
    return args


def make_clip(path: pathlib.Path, images, frames_per_image: int) -> int:
    """Each image resized to CLIP_SIZE and panned STEP_PX a frame (edges repeated); returns the frame count."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*'mp4v'), 25, CLIP_SIZE)
    assert writer.isOpened(), f'OpenCV cannot write {path}'
    for image in images:
        image = cv2.resize(image, CLIP_SIZE, interpolation=cv2.INTER_AREA)
        for t in range(frames_per_image):
            shift = np.array([[1, 0, STEP_PX * t], [0, 1, 0]], np.float32)
            writer.write(cv2.warpAffine(image, shift, CLIP_SIZE, borderMode=cv2.BORDER_REPLICATE))
    writer.release()
    return len(images) * frames_per_image


def timed(call):
    start = time.perf_counter()
    value = call()
    return time.perf_counter() - start, value


def bench_video(args, estimator, clip, frames, work):
    from lwop_jax.inference import runs

    def once(pipeline):
        estimator.reset()
        out = work / ('pipelined' if pipeline else 'sequential')
        return runs.run_video(estimator, str(clip), out, pipeline=pipeline)[0]

    records = {False: once(False), True: once(True)}  # warm-up, and the identity check
    assert records[False]['frames'] == records[True]['frames'], 'pipelined and sequential records differ'
    assert len(records[True]['frames']) == frames
    network_s = []  # the network's share of a sequential frame: what pipelining can hide the rest behind
    run = estimator.run

    def timed_run(batch):
        seconds, maps = timed(lambda: run(batch))
        network_s.append(seconds)
        return maps

    estimator.run = timed_run
    total_s, sequential_records = timed(lambda: once(False))
    del estimator.run
    assert records[False] == sequential_records
    people = sum(len(f['people']) for f in records[True]['frames'])
    seconds: dict[bool, list[float]] = {False: [], True: []}
    for _ in range(args.rounds):
        for pipeline in (False, True):
            seconds[pipeline].append(timed(lambda pipeline=pipeline: once(pipeline))[0])
    sequential, pipelined = (frames / statistics.median(seconds[p]) for p in (False, True))
    print(
        f'video {frames} frames {CLIP_SIZE[0]}x{CLIP_SIZE[1]} ({people} tracked poses, annotated mp4 written), '
        f'records identical: yes'
    )
    frame_ms, network_ms = 1e3 * total_s / frames, 1e3 * statistics.median(network_s)
    print(
        f'  a sequential frame: network {network_ms:.1f} ms of {frame_ms:.1f} ms; with a core to spare for '
        f'the rest, pipelining could reach {frame_ms / max(network_ms, frame_ms - network_ms):.2f}x'
    )
    print(f'  sequential (--no-pipeline) {sequential:6.1f} frames/s')
    print(f'  pipelined (default)        {pipelined:6.1f} frames/s   ratio {pipelined / sequential:.2f}')


def bench_folder(args, estimator, paths, work):
    from lwop_jax.inference import runs

    folder = work / 'folder'
    folder.mkdir()
    for index in range(args.images):
        source = paths[index % len(paths)]
        shutil.copy(source, folder / f'{index:04d}_{source.name}')

    def once(batch_size):
        records, failed = runs.run_images(estimator, [str(folder)], work / f'drawn{batch_size}', batch_size=batch_size)
        assert failed == 0
        return records

    sizes = (1, args.batch_size)
    records = {size: once(size) for size in sizes}
    worst = 0.0
    for one, many in zip(records[1], records[args.batch_size]):
        assert len(one['people']) == len(many['people'])
        for a, b in zip(one['people'], many['people']):
            worst = max(worst, float(np.abs(np.array(a['keypoints']) - np.array(b['keypoints'])).max()))
    seconds: dict[int, list[float]] = {size: [] for size in sizes}
    for _ in range(args.rounds):
        for size in sizes:
            seconds[size].append(timed(lambda size=size: once(size))[0])
    single, batched = (args.images / statistics.median(seconds[s]) for s in sizes)
    print(f'folder {args.images} images (the 4 mini images, 3 padded shapes; drawn images written), pipelined')
    print(f'  batch size 1 {single:6.1f} images/s')
    print(
        f'  batch size {args.batch_size} {batched:6.1f} images/s   ratio {batched / single:.2f}   '
        f'largest keypoint difference {worst:.2g} px'
    )


def main():
    args = parse_args()
    from lwop_jax.inference.estimator import PoseEstimator
    from lwop_jax.inference.runs import quiet_opencv

    quiet_opencv()
    model = onnx_model(args)
    cv2.setNumThreads(args.threads)
    paths = sorted((args.shared / 'data' / 'coco_val_mini' / 'val2017').glob('*.jpg'))
    print(
        f'model {model}, {args.backend}, height {args.height_size}, {args.threads} threads, '
        f'{args.rounds} rounds (medians); load average at start {load_average()}'
    )
    with tempfile.TemporaryDirectory(prefix='lwop_bench_video_') as temporary:
        work = pathlib.Path(temporary)
        clip = work / 'clip.mp4'
        frames = make_clip(clip, [cv2.imread(str(p)) for p in paths], args.frames)
        tracked = PoseEstimator(
            model, args.backend, net_height=args.height_size, threads=args.threads, track=True, smooth=True
        )
        bench_video(args, tracked, clip, frames, work)
        untracked = PoseEstimator(model, args.backend, net_height=args.height_size, threads=args.threads)
        bench_folder(args, untracked, paths, work)
    print(f'load average at end {load_average()} (a shared machine: compare only quiet runs)')


if __name__ == '__main__':
    main()
