"""COCO keypoint evaluation: the original ``val.py`` path, any backend, plus flip test-time augmentation.

Each image goes through the original ``infer`` (:mod:`lwop_jax.evaluation.detect`: scales, flip, decoding);
COCOeval (pycocotools) scores the detections against the annotation file.

Differences from the original, on purpose:
* image ids come from the annotation file's ``images`` entries, not from the file names (D6);
* zero detections give AP 0 with a note (the original crashes inside ``loadRes`` on an empty list);
* with a subset of images (``max_images``, ``image_ids``, skipped missing or unreadable files) only the
  evaluated images are scored, so skipped people do not count as misses;
* ``flip``: the mirrored image is run too and its maps are un-mirrored before averaging.

NumPy, OpenCV, tqdm; pycocotools is imported when scoring (the [eval] extra); jax only when
:func:`evaluate_model` wraps an in-memory model.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import pathlib
import time
from dataclasses import dataclass, field

import cv2
from tqdm import tqdm

from lwop_jax import atomic
from lwop_jax.errors import InputFileError
from lwop_jax.evaluation.detect import MULTISCALE, coco_results, detect_poses
from lwop_jax.evaluation.sigmas import keypoint_category_names, schema_sigmas
from lwop_jax.inference.backends import JaxBackend
from lwop_jax.inference.preprocess import STRIDE, VAL_BASE_HEIGHT
from lwop_jax.inference.results import draw_poses

STAT_NAMES = ('AP', 'AP50', 'AP75', 'APm', 'APl', 'AR', 'AR50', 'AR75', 'ARm', 'ARl')
NO_DETECTIONS_NOTE = (
    'no detections: every person is a miss, so AP and AR are 0 (-1 where the '
    'annotations have no person of that size); the original val.py crashes here'
)


@dataclass
class EvalResult:
    """Outcome of one evaluation.

    stats:      the 10 COCOeval keypoint stats by name (STAT_NAMES order).
    detections: COCO result dicts (image_id, category_id, keypoints (51 values), score), image order.
    image_ids:  ids of the images that were evaluated (and scored), in annotation-file order.
    missing:    image paths referenced by the annotations but absent (only with skip_missing).
    unreadable: image paths that exist but OpenCV cannot decode; skipped.
    summary:    the pycocotools summary table, as it prints it.
    note:       a remark on the result (e.g. no detections), or None.
    seconds:    wall time of the detection loop (network + decoding), without scoring.
    """

    stats: dict
    detections: list
    image_ids: list
    missing: list = field(default_factory=list)
    unreadable: list = field(default_factory=list)
    summary: str = ''
    note: str | None = None
    seconds: float = 0.0

    @property
    def stats_list(self) -> list:
        return [self.stats[name] for name in STAT_NAMES]

    @property
    def images_per_second(self) -> float:
        return len(self.image_ids) / self.seconds if self.seconds > 0 else float('nan')


# ----------------------------------------------------------------------------------------------
# Annotation file
# ----------------------------------------------------------------------------------------------


def load_annotations(path) -> dict:
    """Reads and checks a COCO person-keypoints annotation file. Raises InputFileError."""
    path = pathlib.Path(path)
    if not path.is_file():
        raise InputFileError(f'{path}: annotation file not found')
    try:
        with open(path, encoding='utf-8') as f:
            dataset = json.load(f)
    except json.JSONDecodeError as exc:
        raise InputFileError(f'{path}: malformed JSON ({exc.msg} at line {exc.lineno} column {exc.colno})') from exc
    except UnicodeDecodeError as exc:
        raise InputFileError(f'{path}: not a UTF-8 text file ({exc.reason})') from exc
    _check_person_keypoints(path, dataset)
    return dataset


def _check_person_keypoints(path, dataset):
    if not isinstance(dataset, dict):
        raise InputFileError(f'{path}: a JSON {type(dataset).__name__}, not a COCO person keypoints file')
    for key in ('images', 'annotations', 'categories'):
        if not isinstance(dataset.get(key), list):
            raise InputFileError(f'{path}: no "{key}" list; not a COCO person keypoints file')
    if not any(isinstance(c, dict) and 'keypoints' in c for c in dataset['categories']):
        raise InputFileError(f'{path}: no category with keypoints; not a COCO person keypoints file')
    if not any(isinstance(a, dict) and 'keypoints' in a for a in dataset['annotations']):
        raise InputFileError(f'{path}: no annotation has keypoints; not a COCO person keypoints file')
    for image in dataset['images']:
        if not (isinstance(image, dict) and 'id' in image and 'file_name' in image):
            raise InputFileError(f'{path}: an "images" entry lacks "id" or "file_name": {str(image)[:80]}')


def keypoint_category_id(dataset) -> int:
    """Id of the (first) category with keypoints: 1, person, in COCO (val.py hard-codes 1)."""
    return next(c['id'] for c in dataset['categories'] if 'keypoints' in c)


def select_images(dataset, image_ids=None, max_images=None) -> list:
    """The ``images`` entries to evaluate, in file order: those in image_ids (all if None), the first
    max_images of them. Raises InputFileError for ids the file does not hold."""
    images = dataset['images']
    if image_ids is not None:
        wanted = set(image_ids)
        unknown = wanted - {image['id'] for image in images}
        if unknown:
            raise InputFileError(f'image ids not in the annotation file: {sorted(unknown)[:20]}')
        images = [image for image in images if image['id'] in wanted]
    if max_images is not None:
        images = images[:max_images]
    return images


# ----------------------------------------------------------------------------------------------
# Scoring
# ----------------------------------------------------------------------------------------------


def coco_keypoint_stats(dataset, detections, image_ids, schema=None) -> tuple[dict, str, str | None]:
    """COCOeval keypoints on the given images. Returns (stats by name, summary table, note).

    With a keypoint ``schema`` other than the original's, OKS uses its sigmas over the dataset's keypoints
    that it predicts; the dataset keypoints it does not predict are left out of the ground truth.
    pycocotools prints as it goes; that output is captured, so the caller decides what is shown.
    """
    sigmas, dataset = schema_sigmas(schema, dataset)
    from pycocotools.coco import COCO  # the [eval] extra: only scoring needs it
    from pycocotools.cocoeval import COCOeval

    captured = io.StringIO()
    with contextlib.redirect_stdout(captured):
        ground_truth = COCO()
        ground_truth.dataset = dataset
        ground_truth.createIndex()
        results = _results_api(ground_truth, detections)
        evaluator = COCOeval(ground_truth, results, 'keypoints')
        if sigmas is not None:
            evaluator.params.kpt_oks_sigmas = sigmas
        evaluator.params.imgIds = sorted(image_ids)
        evaluator.evaluate()
        evaluator.accumulate()
        summary_start = captured.tell()
        evaluator.summarize()
    stats = {name: float(value) for name, value in zip(STAT_NAMES, evaluator.stats)}
    return stats, captured.getvalue()[summary_start:], None if detections else NO_DETECTIONS_NOTE


def _results_api(ground_truth, detections):
    """loadRes, except for no detections: loadRes reads detections[0] and raises IndexError there, so an
    empty result set is built directly (COCOeval then counts every person as missed)."""
    from pycocotools.coco import COCO  # the [eval] extra

    if detections:
        # loadRes writes area, id and bbox into the dicts it is given: hand it copies.
        return ground_truth.loadRes([dict(d) for d in detections])
    empty = COCO()
    empty.dataset = {
        'images': list(ground_truth.dataset['images']),
        'annotations': [],
        'categories': list(ground_truth.dataset['categories']),
    }
    empty.createIndex()
    return empty


# ----------------------------------------------------------------------------------------------
# Evaluation loop
# ----------------------------------------------------------------------------------------------


def locate_images(dataset, images_dir, image_ids=None, max_images=None, skip_missing=False):
    """The selected images (see select_images) that exist: ([(image entry, path)], [missing paths]).
    Raises InputFileError for a missing folder, or listing the missing files unless skip_missing."""
    images_dir = pathlib.Path(images_dir)
    if not images_dir.is_dir():
        raise InputFileError(f'{images_dir}: images folder not found')
    images = select_images(dataset, image_ids, max_images)
    present, missing = [], []
    for image in images:
        path = images_dir / image['file_name']
        (present.append((image, path)) if path.is_file() else missing.append(str(path)))
    if missing and not skip_missing:
        listed = ', '.join(missing[:10]) + (f' and {len(missing) - 10} more' if len(missing) > 10 else '')
        raise InputFileError(
            f'{len(missing)} of {len(images)} images not found in {images_dir}: {listed} '
            '(pass skip_missing / --skip-missing to evaluate the rest)'
        )
    return present, missing


def _progress(total, enabled):
    return tqdm(total=total, unit='img', desc='evaluating', disable=not enabled, dynamic_ncols=True)


def _save_visualization(image, poses, file_name, visualize_dir, schema=None):
    target = pathlib.Path(visualize_dir) / pathlib.Path(file_name).name
    if not cv2.imwrite(str(target), draw_poses(image, poses.keypoints, schema=schema)):
        raise OSError(f'{target}: cannot write the visualization')


def as_dataset(annotations_json) -> dict:
    """An annotation file's path, or its already loaded dict (checked the same way)."""
    if isinstance(annotations_json, dict):
        _check_person_keypoints('annotations', annotations_json)
        return annotations_json
    return load_annotations(annotations_json)


def score_images(dataset, present, missing, poses_of, *, progress=False, visualize_dir=None, schema=None) -> EvalResult:
    """Detections of ``poses_of(image, image_entry) -> decode.Poses`` on each readable image of
    ``present`` (unreadable ones are skipped and listed), scored with COCOeval over those images.
    schema: the keypoint schema of the poses (None: coco18)."""
    category_id = keypoint_category_id(dataset)
    names = keypoint_category_names(dataset)
    if visualize_dir is not None:
        os.makedirs(visualize_dir, exist_ok=True)
    detections, evaluated, unreadable = [], [], []
    start = time.perf_counter()
    with _progress(len(present), progress) as bar:
        for image_entry, path in present:
            image = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if image is None:
                unreadable.append(str(path))
            else:
                poses = poses_of(image, image_entry)
                detections.extend(coco_results(poses, image_entry['id'], category_id, schema, names))
                evaluated.append(image_entry['id'])
                if visualize_dir is not None:
                    _save_visualization(image, poses, image_entry['file_name'], visualize_dir, schema)
            bar.update()
    seconds = time.perf_counter() - start
    if not evaluated:
        raise InputFileError(f'no image could be evaluated ({len(missing)} missing, {len(unreadable)} unreadable)')
    stats, summary, note = coco_keypoint_stats(dataset, detections, evaluated, schema)
    return EvalResult(
        stats=stats,
        detections=detections,
        image_ids=evaluated,
        missing=missing,
        unreadable=unreadable,
        summary=summary,
        note=note,
        seconds=seconds,
    )


def evaluate_backend(
    backend,
    annotations_json,
    images_dir,
    *,
    base_height=VAL_BASE_HEIGHT,
    scales=(1,),
    flip=False,
    max_images=None,
    image_ids=None,
    progress=True,
    visualize_dir=None,
    skip_missing=False,
) -> EvalResult:
    """Runs ``backend`` on the annotated images and scores the detections with COCOeval.

    backend: callable (1, Hp, Wp, 3) float32 -> last-stage maps NHWC (see runtime.load_backend).
    annotations_json: the annotation file's path, or its already loaded dict. Images come from its
    ``images`` (ids from there), optionally restricted to image_ids and/or the first max_images.
    Missing files stop the run (InputFileError) unless skip_missing; unreadable files are skipped and
    listed. visualize_dir: save each image there with its poses drawn. Returns EvalResult.
    """
    dataset = as_dataset(annotations_json)
    present, missing = locate_images(dataset, images_dir, image_ids, max_images, skip_missing)
    schema = getattr(backend, 'keypoint_schema', None)
    return score_images(
        dataset,
        present,
        missing,
        lambda image, _: detect_poses(backend, image, base_height, scales, flip, schema=schema),
        progress=progress,
        visualize_dir=visualize_dir,
        schema=schema,
    )


def evaluate_model(model, annotations_json, images_dir, *, output_path=None, **kwargs) -> dict:
    """Training-loop hook: evaluates an in-memory PoseNet through the JAX backend.

    model: a PoseNet in eval mode (BatchNorm on running statistics; train_lib.model_from_state gives one).
    output_path: also write the detections JSON there (atomically). Other keywords: evaluate_backend's.
    Quiet (no progress bar, no prints) unless progress=True. Returns the stats dict (STAT_NAMES order).
    """
    _require_eval_mode(model)
    kwargs.setdefault('progress', False)
    result = evaluate_backend(JaxBackend(model), annotations_json, images_dir, **kwargs)
    if output_path is not None:
        atomic.write_json(output_path, result.detections)
    return result.stats


def _require_eval_mode(model):
    """A model left in training mode would normalise each image with its own batch statistics and give
    meaningless stats without any error; refuse it instead."""
    from flax import nnx  # the [jax] extra: an in-memory model means jax is loaded anyway

    training = [
        path for path, module in nnx.iter_modules(model) if getattr(module, 'use_running_average', True) is False
    ]
    if training:
        raise ValueError(
            f'evaluate_model needs the model in eval mode ({len(training)} BatchNorm layers use '
            'batch statistics); call model.set_training(False) first'
        )


# ----------------------------------------------------------------------------------------------
# Files
# ----------------------------------------------------------------------------------------------


def stats_record(
    result: EvalResult,
    *,
    checkpoint,
    backend,
    labels,
    scales=(1,),
    flip=False,
    base_height=VAL_BASE_HEIGHT,
    precision='fp32',
) -> dict:
    """The stats JSON (evaluate.py --stats-json): the 10 stats by name and as a list, and how they were got."""
    return {
        'checkpoint': str(checkpoint),
        'backend': backend,
        'precision': precision,
        'labels': str(labels),
        'multiscale': len(scales) > 1,
        'scales': list(scales),
        'flip': flip,
        'base_height': base_height,
        'stride': STRIDE,
        'num_images': len(result.image_ids),
        'num_detections': len(result.detections),
        'missing': result.missing,
        'unreadable': result.unreadable,
        'note': result.note,
        'images_per_second': result.images_per_second,
        'stats_order': list(STAT_NAMES),
        'stats': result.stats,
        'stats_list': result.stats_list,
    }


__all__ = [
    'STAT_NAMES',
    'MULTISCALE',
    'EvalResult',
    'load_annotations',
    'select_images',
    'keypoint_category_id',
    'locate_images',
    'coco_keypoint_stats',
    'evaluate_backend',
    'evaluate_model',
    'stats_record',
]
