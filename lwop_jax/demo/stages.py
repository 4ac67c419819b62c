"""The demo's stages besides training: synthetic data, COCO AP on the held-out set, ONNX export, infer,
and the result picture."""

from __future__ import annotations

import json
import pathlib

import cv2
import numpy as np

from lwop_jax import atomic, synthetic
from lwop_jax.checkpoints import export, orbax_io
from lwop_jax.evaluation import coco_eval
from lwop_jax.inference import runs
from lwop_jax.inference.backends import load_backend
from lwop_jax.inference.estimator import PoseEstimator
from lwop_jax.synthetic.dataset_skeleton import SKELETON_FOLDER, load_skeleton


def make_data(config, out: pathlib.Path, seed: int, skeleton: str | None = None) -> dict:
    """The training and held-out sets; returns {'train': dir, 'val': dir} (images/ + annotations.json).
    skeleton: the name of their shipped dataset skeleton (lwop synthetic --skeleton; None: COCO's 17
    keypoints)."""
    demo = config.demo
    # The shipped file itself: load_skeleton would read a folder of that name in the working directory.
    shipped = load_skeleton(SKELETON_FOLDER / f'{skeleton}.json') if skeleton else None
    folders = {}
    for split, count, split_seed in (
        ('train', demo.num_train_images, 2 * seed),
        ('val', demo.num_val_images, 2 * seed + 1),
    ):
        folder = out / 'data' / split
        synthetic.generate_dataset(
            folder,
            count,
            seed=split_seed,
            width=demo.image_width,
            height=demo.image_height,
            max_people=demo.max_people,
            crowd_probability=demo.crowd_probability,
            min_person_height=demo.min_person_height,
            max_person_height=demo.max_person_height,
            people_inside=demo.people_inside,
            clutter_shapes=tuple(demo.clutter_shapes),
            workers=demo.data_workers,
            skeleton=shipped,
        )
        folders[split] = folder
    return folders


def evaluate(
    checkpoint, val_dir: pathlib.Path, eval_dir: pathlib.Path, base_height: int, flip_test: bool = False
) -> dict:
    """COCO keypoint AP of an orbax checkpoint (JAX backend) on the held-out set, as evaluate.py does;
    writes detections.json and stats.json (evaluate.py --stats-json's record) into eval_dir.

    flip_test: also score the flip test (evaluate.py --flip: the maps averaged with those of the mirrored
    image) into flip_stats.json; the record gets its stats as 'flip_stats'.
    """
    eval_dir.mkdir(parents=True, exist_ok=True)
    labels = val_dir / 'annotations.json'
    backend = load_backend(checkpoint, 'jax')
    dataset = coco_eval.load_annotations(labels)

    def score(flip, stats_name):
        result = coco_eval.evaluate_backend(
            backend, dataset, val_dir / 'images', base_height=base_height, flip=flip, progress=False
        )
        record = coco_eval.stats_record(
            result, checkpoint=checkpoint, backend=backend.name, labels=labels, base_height=base_height, flip=flip
        )
        atomic.write_json(eval_dir / stats_name, record, indent=1)
        return result, record

    result, record = score(False, 'stats.json')
    atomic.write_json(eval_dir / 'detections.json', result.detections)
    print(result.summary, end='')
    if result.note:
        print(f'note: {result.note}')
    if flip_test:
        flipped, flip_record = score(True, 'flip_stats.json')
        record['flip_stats'] = flip_record['stats']
        print(
            f'   with the flip test (evaluate.py --flip): AP {flipped.stats["AP"]:.3f} '
            f'(AP50 {flipped.stats["AP50"]:.3f}, AR {flipped.stats["AR"]:.3f})'
        )
    return record


# ----------------------------------------------------------------------------------------------- infer


def infer(onnx_path, images, infer_dir: pathlib.Path, height: int) -> pathlib.Path:
    """What ``lwop infer`` does, with ONNX Runtime, on the images: drawn copies in infer_dir, keypoints in
    infer_dir/poses.json (the same JSON)."""
    estimator = PoseEstimator(onnx_path, 'onnxruntime', net_height=height)
    records, failed = runs.run_images(estimator, [str(image) for image in images], infer_dir)
    if failed:
        raise RuntimeError(f'infer: {failed} of {len(images)} held-out images failed')
    json_path = infer_dir / 'poses.json'
    atomic.write_json(json_path, {**runs.json_header(estimator, onnx_path, height), 'images': records}, indent=1)
    return json_path


def pick_images(val_dir: pathlib.Path, detections, count: int) -> list:
    """Held-out images to draw: those with the most people the network found well (by detection score
    against the number of annotated people), best first."""
    dataset = json.loads((val_dir / 'annotations.json').read_text())
    people: dict[int, int] = {}
    for annotation in dataset['annotations']:
        if not annotation.get('iscrowd') and annotation['num_keypoints'] >= 8:
            people[annotation['image_id']] = people.get(annotation['image_id'], 0) + 1
    found: dict[int, list[float]] = {}
    for detection in detections:
        if detection['score'] > 0:
            found.setdefault(detection['image_id'], []).append(detection['score'])

    def quality(entry):
        wanted = people.get(entry['id'], 0)
        scores = sorted(found.get(entry['id'], []), reverse=True)
        # Reward images with several people whose strongest detections are many and confident; penalise
        # mismatched counts.
        return (min(wanted, 3), sum(scores[:wanted]) - 2 * abs(len(scores) - wanted))

    ranked = sorted(dataset['images'], key=quality, reverse=True)
    return [val_dir / 'images' / entry['file_name'] for entry in ranked[:count]]


def result_picture(drawn_paths, max_width: int = 640, quality: int = 80):
    """Up to 4 drawn images tiled 2 x 2 (or the first alone), at most max_width wide; JPEG bytes."""
    images = [i for i in (cv2.imread(str(p)) for p in drawn_paths) if i is not None]
    if not images:
        raise RuntimeError('infer.py drew no image')
    if len(images) >= 4:
        h, w = images[0].shape[:2]
        tiles = [cv2.resize(i, (w, h), interpolation=cv2.INTER_AREA) for i in images[:4]]
        picture = np.concatenate([np.concatenate(tiles[:2], 1), np.concatenate(tiles[2:], 1)], 0)
    else:
        picture = images[0]
    if picture.shape[1] > max_width:
        scale = max_width / picture.shape[1]
        picture = cv2.resize(picture, (max_width, round(picture.shape[0] * scale)), interpolation=cv2.INTER_AREA)
    ok, encoded = cv2.imencode('.jpg', picture, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise RuntimeError('cannot encode the result picture')
    return encoded.tobytes()


def export_onnx(checkpoint, path: pathlib.Path) -> pathlib.Path:
    """The trained model as ONNX (BatchNorm folded, dynamic batch/height/width)."""
    return export.export_onnx(orbax_io.load_any(checkpoint), path)
