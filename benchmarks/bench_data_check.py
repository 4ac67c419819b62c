"""Benchmark: ``lwop data check`` on a COCO-sized annotation file (100k person annotations by default).

Writes a synthetic COCO person-keypoints file shaped like person_keypoints_train2017 (2.5 persons per
image, about half of the 17 keypoints labelled, 1 % crowd regions as RLE) and one 640x480 JPEG hard-linked
under every image name (so the images cost no disk), then times in the same run:

* ``json.load`` of the file alone (the floor: no check can read the file faster);
* pycocotools' ``COCO(file)`` (loads and indexes it: what evaluation does before anything else);
* :func:`lwop_jax.data.check.check_dataset` with the header check (the default);
* training's :func:`lwop_jax.data.coco.prepare_annotations` on the same file (for scale: the check counts
  samples without preparing them);
* the full decode (``--decode``) per image, on a sample, against the header read per image.

    python benchmarks/bench_data_check.py [--annotations 100000] [--decode-sample 300]
"""

import argparse
import contextlib
import io
import json
import os
import pathlib
import sys
import tempfile
import time

import cv2
import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
from lwop_jax.data import check, coco
from lwop_jax.data.image_files import image_problem
from lwop_jax.skeleton import COCO_KEYPOINT_NAMES

WIDTH, HEIGHT = 640, 480
PERSONS_PER_IMAGE = 2.5
CROWD_SHARE = 0.01


def synthetic_coco(num_annotations: int, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    num_images = int(num_annotations / PERSONS_PER_IMAGE)
    images = [{'id': i + 1, 'file_name': f'{i + 1:012d}.jpg', 'width': WIDTH, 'height': HEIGHT}
              for i in range(num_images)]  # fmt: skip
    annotations = []
    for index in range(num_annotations):
        image_id = int(rng.integers(1, num_images + 1))
        if rng.random() < CROWD_SHARE:
            counts = [int(c) for c in rng.integers(1, 2000, 20)]
            counts.append(WIDTH * HEIGHT - sum(counts))
            segmentation = {'counts': counts, 'size': [HEIGHT, WIDTH]}
            annotations.append({'id': index + 1, 'image_id': image_id, 'category_id': 1, 'iscrowd': 1,
                                'segmentation': segmentation, 'keypoints': [0] * 51, 'num_keypoints': 0,
                                'bbox': [0, 0, 100, 100], 'area': 5000})  # fmt: skip
            continue
        x0, y0 = rng.uniform(0, WIDTH - 120), rng.uniform(0, HEIGHT - 240)
        w, h = rng.uniform(40, 120), rng.uniform(80, 240)
        points = np.stack([rng.uniform(x0, x0 + w, 17), rng.uniform(y0, y0 + h, 17), rng.integers(0, 3, 17)], 1)
        points[points[:, 2] == 0] = 0
        keypoints = [round(float(v), 2) for v in points.ravel()]
        annotations.append({
            'id': index + 1, 'image_id': image_id, 'category_id': 1, 'iscrowd': 0, 'keypoints': keypoints,
            'num_keypoints': int((points[:, 2] > 0).sum()),
            'bbox': [round(x0, 2), round(y0, 2), round(w, 2), round(h, 2)],
            'area': round(w * h * 0.6, 2), 'segmentation': [[x0, y0, x0 + w, y0, x0 + w, y0 + h, x0, y0 + h]],
        })  # fmt: skip
    category = {'id': 1, 'name': 'person', 'supercategory': 'person', 'keypoints': list(COCO_KEYPOINT_NAMES),
                'skeleton': []}  # fmt: skip
    return {'images': images, 'annotations': annotations, 'categories': [category]}


def write_dataset(folder: pathlib.Path, num_annotations: int) -> tuple[pathlib.Path, pathlib.Path]:
    labels, images = folder / 'person_keypoints.json', folder / 'images'
    content = synthetic_coco(num_annotations)
    labels.write_text(json.dumps(content))
    images.mkdir()
    picture = np.random.default_rng(1).integers(0, 255, (HEIGHT, WIDTH, 3), dtype=np.uint8)
    source = folder / 'one.jpg'
    source.write_bytes(cv2.imencode('.jpg', cv2.GaussianBlur(picture, (0, 0), 3))[1].tobytes())
    for image in content['images']:
        os.link(source, images / image['file_name'])
    return labels, images


def timed(function, repeats: int = 3):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = function()
        times.append(time.perf_counter() - start)
    return min(times), result


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--annotations', type=int, default=100_000)
    parser.add_argument('--decode-sample', type=int, default=300, help='images decoded to time --decode per image')
    parser.add_argument('--repeats', type=int, default=3)
    args = parser.parse_args()
    print(f'load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs')
    with tempfile.TemporaryDirectory() as folder:
        labels, images = write_dataset(pathlib.Path(folder), args.annotations)
        size_mb = labels.stat().st_size / 1e6
        print(f'{args.annotations} annotations, {len(os.listdir(images))} images, {size_mb:.0f} MB of JSON')

        json_s, content = timed(lambda: json.loads(labels.read_text()), args.repeats)
        from pycocotools.coco import COCO

        with contextlib.redirect_stdout(io.StringIO()):  # COCO() prints its own timing
            cocoapi_s, _ = timed(lambda: COCO(str(labels)), args.repeats)
        check_s, report = timed(lambda: check.check_dataset(labels, images), args.repeats)
        prepare_s, _ = timed(lambda: coco.prepare_annotations(content), args.repeats)
        print('\n'.join(report.lines()[:3]))
        print(f'json.load alone:                {json_s:6.2f} s')
        print(f'pycocotools COCO(file):         {cocoapi_s:6.2f} s')
        print(
            f'lwop data check (header check): {check_s:6.2f} s = {check_s / json_s:.2f}x json.load, '
            f'{check_s / cocoapi_s:.2f}x COCO(file)'
        )
        print(f"training's prepare_annotations: {prepare_s:6.2f} s (the check counts its samples with main_persons, "
              'without preparing the labels)')  # fmt: skip

        sample = content['images'][: args.decode_sample]
        paths = [os.path.join(images, image['file_name']) for image in sample]
        header_s, _ = timed(lambda: [image_problem(p, WIDTH, HEIGHT) for p in paths], args.repeats)
        decode_s, _ = timed(lambda: [image_problem(p, WIDTH, HEIGHT, decode=True) for p in paths], args.repeats)
        per_header, per_decode = header_s / len(paths) * 1e6, decode_s / len(paths) * 1e6
        print(f'per image ({WIDTH}x{HEIGHT} JPEG, cached): header {per_header:.0f} us, --decode {per_decode:.0f} us '
              f'({per_decode / per_header:.0f}x); --decode on all {len(content["images"])} images: '
              f'~{per_decode * len(content["images"]) / 1e6:.0f} s')  # fmt: skip


if __name__ == '__main__':
    main()
