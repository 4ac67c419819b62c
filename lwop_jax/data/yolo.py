"""Ultralytics YOLO-pose labels and their images -> a COCO person-keypoints file (``lwop data import-yolo``).

The format (docs.ultralytics.com/datasets/pose): one text file per image, named as the image with ``.txt``,
in a labels folder that mirrors the images folder (``labels/train/a.txt`` for ``images/train/a.jpg``); one
line per object: ``class cx cy w h``, then ``x y v`` per keypoint (the dataset's ``kpt_shape: [K, 3]``) or
``x y`` (``kpt_shape: [K, 2]``), every coordinate normalised by the image's width or height. ``v`` is COCO's
flag: 0 not labelled, 1 labelled but hidden, 2 visible. Without ``v`` a point is unlabelled where x or y
is negative (as Ultralytics reads such lines) or where both are 0 (as converters write missing points,
and as the original's pipeline takes (0, 0) anyway).

A bad line is reported as ``file:line: problem`` and skipped; the rest is imported.
"""

from __future__ import annotations

import dataclasses
import math
import os
import pathlib

import numpy as np
from tqdm import tqdm

from lwop_jax.data.image_files import image_size
from lwop_jax.data.samples import UnreadableImage
from lwop_jax.errors import InputFileError
from lwop_jax.schema import KeypointSchema
from lwop_jax.skeleton import COCO_KEYPOINT_NAMES

# The image types Ultralytics reads that OpenCV decodes, in the order tried.
IMAGE_SUFFIXES = ('.jpg', '.jpeg', '.png', '.bmp', '.tif', '.tiff', '.webp', '.JPG', '.JPEG', '.PNG')


class BadLine(InputFileError):
    """A label line that cannot be imported; the message says why."""


@dataclasses.dataclass
class YoloImport:
    """The COCO object and what could not be imported (``file:line: problem`` or ``file: problem``)."""

    coco: dict
    problems: list[str]
    label_files: int = 0
    lines_skipped_by_class: int = 0


def schema_dataset_keypoints(schema: KeypointSchema) -> tuple[str, ...]:
    """The dataset keypoints a schema reads, as YOLO columns: COCO's order when they are COCO's 17 (as
    Ultralytics' COCO-pose data has them), else the order in which the schema names them."""
    names: list[str] = []
    for source in schema.sources:
        for name in source if isinstance(source, tuple) else (source,):
            if name not in names:
                names.append(name)
    return COCO_KEYPOINT_NAMES if set(names) == set(COCO_KEYPOINT_NAMES) else tuple(names)


def parse_line(text: str, num_keypoints: int) -> tuple[int, np.ndarray, np.ndarray]:
    """One label line -> (class, box (4,) cx cy w h, keypoints (K, 3) x y v), all normalised; BadLine."""
    fields = text.split()
    with_flags, without = 5 + 3 * num_keypoints, 5 + 2 * num_keypoints
    if len(fields) not in (with_flags, without):
        raise BadLine(
            f'{len(fields)} columns; expected {with_flags} (class, box, x y v for each of {num_keypoints} '
            f'keypoints) or {without} (x y without v)'
        )
    try:
        values = np.array([float(field) for field in fields])
    except ValueError:
        raise BadLine(f'not a number: {next(f for f in fields if not _is_number(f))!r}') from None
    if not np.isfinite(values).all():
        raise BadLine('a value that is not finite')
    label, box = values[0], values[1:5]
    if label < 0 or label != int(label):
        raise BadLine(f'class {fields[0]} is not a non-negative integer')
    if not ((box >= 0) & (box <= 1)).all() or box[2] <= 0 or box[3] <= 0:
        raise BadLine(f'box {" ".join(fields[1:5])} is not normalised to [0, 1] with a positive size')
    if len(fields) == with_flags:
        keypoints = values[5:].reshape(num_keypoints, 3)
        if not np.isin(keypoints[:, 2], (0, 1, 2)).all():
            odd = keypoints[~np.isin(keypoints[:, 2], (0, 1, 2)), 2][0]
            raise BadLine(f'visibility {odd:g} is not 0, 1 or 2')
    else:
        points = values[5:].reshape(num_keypoints, 2)
        unlabelled = (points < 0).any(1) | (points == 0).all(1)
        keypoints = np.concatenate([points, np.where(unlabelled, 0.0, 2.0)[:, None]], axis=1)
    return int(label), box, keypoints


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def find_image(label_file: pathlib.Path, labels_dir: pathlib.Path, images_dir: pathlib.Path) -> pathlib.Path | None:
    """The image of a label file: the same path under the images folder with an image suffix."""
    stem = images_dir / label_file.relative_to(labels_dir).with_suffix('')
    for suffix in IMAGE_SUFFIXES:
        candidate = stem.with_name(stem.name + suffix)
        if candidate.is_file():
            return candidate
    return None


def person_annotation(box: np.ndarray, keypoints: np.ndarray, width: int, height: int) -> dict:
    """A COCO annotation in pixels from one parsed line; area is the box's (YOLO has no segmentation)."""
    scale = np.array([width, height], np.float64)
    x, y = (box[:2] - box[2:] / 2) * scale
    w, h = box[2:] * scale
    points = keypoints.copy()
    points[:, :2] *= scale
    points[points[:, 2] == 0] = 0  # COCO: an unlabelled point is 0, 0, 0
    return {
        'category_id': 1,
        'iscrowd': 0,
        'keypoints': [round(float(v), 3) for v in points.ravel()],
        'num_keypoints': int((points[:, 2] > 0).sum()),
        'bbox': [round(float(v), 3) for v in (x, y, w, h)],
        'area': round(float(w * h), 3),
        'segmentation': [],
    }


def import_yolo(
    labels_dir,
    images_dir,
    keypoint_names: tuple[str, ...],
    *,
    category_name: str = 'person',
    class_id: int | None = None,
    progress: bool = False,
) -> YoloImport:
    """Reads every ``*.txt`` under ``labels_dir`` (recursively) with its image under ``images_dir``.

    ``class_id``: import only the lines of this class (None: all, as one category). Raises InputFileError
    (one line) when there is no label file or when the images folder holds none of the labelled images.
    """
    labels_dir, images_dir = pathlib.Path(labels_dir), pathlib.Path(images_dir)
    for folder, what in ((labels_dir, 'YOLO labels'), (images_dir, 'images')):
        if not folder.is_dir():
            raise InputFileError(f'{folder}: {what} folder not found')
    label_files = sorted(labels_dir.rglob('*.txt'))
    if not label_files:
        raise InputFileError(f'{labels_dir}: no YOLO label files (*.txt) here')
    paired = [(label_file, find_image(label_file, labels_dir, images_dir)) for label_file in label_files]
    if not any(image for _, image in paired):
        example = label_files[0].relative_to(labels_dir).with_suffix('.jpg')
        raise InputFileError(
            f'{images_dir}: none of the {len(label_files)} labelled images is here (e.g. {example} for '
            f'{label_files[0]}); --images is the folder the label folder mirrors'
        )
    category = {
        'id': 1,
        'name': category_name,
        'supercategory': category_name,
        'keypoints': list(keypoint_names),
        'skeleton': [],
    }
    result = YoloImport({'images': [], 'annotations': [], 'categories': [category]}, [], len(label_files))
    for label_file, image_path in tqdm(paired, desc='YOLO labels', unit='file', disable=not progress, leave=False):
        if image_path is None:
            result.problems.append(f'{label_file}: no image of this name in {images_dir}')
            continue
        _import_file(label_file, image_path, images_dir, keypoint_names, class_id, result)
    return result


def _import_file(label_file, image_path, images_dir, keypoint_names, class_id, result: YoloImport) -> None:
    try:
        width, height = image_size(image_path)
        lines = label_file.read_text().splitlines()
    except (OSError, UnreadableImage, UnicodeDecodeError) as exc:
        result.problems.append(f'{image_path if isinstance(exc, UnreadableImage) else label_file}: {exc}')
        return
    image_id = len(result.coco['images']) + 1
    result.coco['images'].append(
        {'id': image_id, 'file_name': image_path.relative_to(images_dir).as_posix(), 'width': width, 'height': height}
    )
    annotations = result.coco['annotations']
    for number, text in enumerate(lines, start=1):
        if not text.strip():
            continue
        try:
            label, box, keypoints = parse_line(text, len(keypoint_names))
        except BadLine as exc:
            result.problems.append(f'{label_file}:{number}: {exc}')
            continue
        if class_id is not None and label != class_id:
            result.lines_skipped_by_class += 1
            continue
        annotation = person_annotation(box, keypoints, width, height)
        annotations.append({'id': len(annotations) + 1, 'image_id': image_id, **annotation})


def summary(result: YoloImport, out: str | os.PathLike) -> str:
    coco = result.coco
    other = result.lines_skipped_by_class
    skipped = f', {other} lines of other classes skipped' if other else ''
    labelled = sum(a['num_keypoints'] for a in coco['annotations'])
    per_person = labelled / len(coco['annotations']) if coco['annotations'] else math.nan
    return (
        f'{out}: {len(coco["annotations"])} persons on {len(coco["images"])} images from {result.label_files} label '
        f'files ({per_person:.1f} labelled keypoints per person{skipped}); {len(result.problems)} problems'
    )
