"""COCO person-keypoint labels as the original training pipeline selects and converts them.

Reproduces, exactly, two pieces of the original code base (the third, its crowd mask, is crowd_mask.py):

* ``scripts/prepare_train_labels.py``: grouping of the annotations per image and
  ``prepare_annotations`` (one training label per *main* person), quirk T6;
* ``datasets/transformations.py::ConvertKeypoints`` (COCO order -> internal 18-point order with a
  synthetic neck), quirk T4.

Keypoint flags after preparation: 0 = labelled but occluded (COCO v=1), 1 = visible (v=2),
2 = absent (v=0) or, after conversion, outside the image.
"""

import json
import logging
import os
from typing import NamedTuple

import numpy as np

from lwop_jax.data.coco_flavours import annotation_area, other_category_ids
from lwop_jax.errors import InputFileError
from lwop_jax.schema import DatasetLayout, load_schema
from lwop_jax.skeleton import COCO_KEYPOINT_NAMES, NUM_COCO_KEYPOINTS

logger = logging.getLogger(__name__)

# Main-person selection of prepare_annotations.
MIN_MAIN_KEYPOINTS = 5
MIN_MAIN_AREA = 32 * 32
# A main person whose bbox centre is closer than this fraction of an earlier kept main person's
# bbox *width* to that person's centre is skipped (the original compares with the width only).
MIN_CENTER_DISTANCE_TO_WIDTH = 0.3

FLAG_OCCLUDED, FLAG_VISIBLE, FLAG_ABSENT = 0, 1, 2


# ------------------------------------------------------------------------------------ keypoints
def coco_visibility_to_flag(visibility):
    """COCO v (0 absent, 1 occluded, 2 visible) -> internal flag (2, 0, 1); anything else -> 2."""
    if visibility == 1:
        return FLAG_OCCLUDED
    if visibility == 2:
        return FLAG_VISIBLE
    return FLAG_ABSENT


def prepare_keypoints(flat_keypoints):
    """COCO ``keypoints`` [x1, y1, v1, x2, ...] -> list of [x, y, flag] (coordinates untouched)."""
    return [
        [flat_keypoints[i], flat_keypoints[i + 1], coco_visibility_to_flag(flat_keypoints[i + 2])]
        for i in range(0, len(flat_keypoints) // 3 * 3, 3)
    ]


def _outside_image(x, y, width, height):
    return (x < 0) | (x >= width) | (y < 0) | (y >= height)


def coco18_layout() -> DatasetLayout:
    """The original's conversion: coco18 keypoints from COCO's 17 (the ``ConvertKeypoints`` table)."""
    return load_schema().dataset_layout(COCO_KEYPOINT_NAMES, 'COCO person keypoints')


def convert_keypoints(keypoints, width, height, layout: DatasetLayout | None = None):
    """The original ``ConvertKeypoints`` for one or many persons, for any schema's dataset layout.

    Points at exactly (0, 0) or outside [0, W) x [0, H) get flag 2. Then the points are reordered
    to the schema's order and each derived keypoint (coco18: the neck at index 1) is the midpoint of its
    two dataset keypoints a and b: flag 2 if either has flag 2, 1 if both are 1, else 0, and flag 2 if
    the midpoint lies outside the image.

    Args:
        keypoints: (..., D, 3) array-like in the dataset's order with prepared flags, image pixels.
        width, height: image size in pixels.
        layout: the schema's keypoints in the dataset (default: coco18 from COCO's 17 keypoints).
    Returns:
        (..., K, 3) float64 array in the schema's order (a new array; the input is not modified).
    """
    layout = layout or coco18_layout()
    dataset = np.array(keypoints, dtype=np.float64)
    if dataset.shape[-2:] != (layout.num_dataset_keypoints, 3):
        raise ValueError(f'keypoints must have shape (..., {layout.num_dataset_keypoints}, 3), got {dataset.shape}')
    x, y, flag = dataset[..., 0], dataset[..., 1], dataset[..., 2]
    absent = ((x == 0) & (y == 0)) | _outside_image(x, y, width, height)
    dataset[..., 2] = np.where(absent, FLAG_ABSENT, flag)

    converted = np.empty(dataset.shape[:-2] + (len(layout.direct), 3), dtype=np.float64)
    direct = [k for k, index in enumerate(layout.direct) if index >= 0]
    converted[..., direct, :] = dataset[..., [layout.direct[k] for k in direct], :]
    for k, index_a, index_b in layout.derived:
        converted[..., k, :] = _midpoint(dataset[..., index_a, :], dataset[..., index_b, :], width, height)
    return converted


def _midpoint(a, b, width, height):
    """(..., 3) midpoint keypoint of a and b with the original neck's flag rule."""
    x, y = (a[..., 0] + b[..., 0]) / 2, (a[..., 1] + b[..., 1]) / 2
    flag = np.where(
        (a[..., 2] == FLAG_ABSENT) | (b[..., 2] == FLAG_ABSENT),
        FLAG_ABSENT,
        np.where((a[..., 2] == FLAG_VISIBLE) & (b[..., 2] == FLAG_VISIBLE), FLAG_VISIBLE, FLAG_OCCLUDED),
    )
    flag = np.where(_outside_image(x, y, width, height), FLAG_ABSENT, flag)
    return np.stack([x, y, flag], axis=-1)


def label_keypoints(label):
    """Prepared keypoints of a label's persons, main person first: (1 + n_others, 17, 3) float64.

    This is the render order of the original (main, then ``processed_other_annotations``).
    """
    persons = [label['keypoints']] + [other['keypoints'] for other in label['processed_other_annotations']]
    return np.array(persons, dtype=np.float64).reshape(len(persons), len(label['keypoints']), 3)


# ------------------------------------------------------------------------------------ selection
def load_coco_json(path):
    """Read a COCO annotation file; InputFileError naming the file if it is not a JSON object."""
    try:
        with open(path) as file:
            coco = json.load(file)
    except json.JSONDecodeError as error:
        raise InputFileError(f'{path}: not valid JSON ({error})') from None
    if not isinstance(coco, dict):
        raise InputFileError(f'{path}: a COCO annotation file must hold a JSON object, got {type(coco).__name__}')
    return coco


def _required_list(coco, key, where):
    value = coco.get(key) if isinstance(coco, dict) else None
    if not isinstance(value, list):
        raise InputFileError(f"{where}: not a COCO annotation file: no '{key}' list")
    return value


def dataset_keypoint_names(coco, where) -> tuple[str, ...]:
    """The ``keypoints`` names of the file's keypoint category (COCO's 17 when it lists none)."""
    categories = [c for c in coco.get('categories') or [] if isinstance(c, dict) and c.get('keypoints')]
    if len(categories) > 1:
        used = {a.get('category_id') for a in coco.get('annotations') or [] if isinstance(a, dict) and 'keypoints' in a}
        categories = [c for c in categories if c.get('id') in used] or categories
    if len(categories) > 1:
        raise InputFileError(f'{where}: {len(categories)} categories with keypoints; a model learns one skeleton')
    if not categories:
        return COCO_KEYPOINT_NAMES
    names = categories[0]['keypoints']
    if not (isinstance(names, list) and all(isinstance(name, str) for name in names)):
        raise InputFileError(
            f"{where}: category {categories[0].get('name', '?')!r}: 'keypoints' must be a list of names"
        )
    return tuple(names)


def _check_person_annotation(annotation, where, num_dataset_keypoints=NUM_COCO_KEYPOINTS):
    missing = [key for key in ('keypoints', 'num_keypoints', 'bbox') if key not in annotation]
    if missing:
        raise InputFileError(
            f'{where}: annotation {annotation.get("id", "?")} has no {missing}: '
            'expected COCO person keypoints (person_keypoints_*.json)'
        )
    if len(annotation['keypoints']) != 3 * num_dataset_keypoints:
        raise InputFileError(
            f'{where}: annotation {annotation.get("id", "?")} has '
            f'{len(annotation["keypoints"])} keypoint values, expected {3 * num_dataset_keypoints}'
        )


def group_annotations_per_image(coco, source=None, num_dataset_keypoints=NUM_COCO_KEYPOINTS):
    """The ``__main__`` grouping of ``prepare_train_labels.py``.

    Returns {image_id: (persons, crowd_segmentations)} in order of each image's first person:
    persons = non-crowd annotations with num_keypoints != 0, in file order; crowd_segmentations =
    the ``segmentation`` of every crowd annotation of that image (images without persons are
    dropped, as in the original; annotations of categories without keypoints are skipped, see coco_flavours).
    """
    where = source or 'COCO annotations'
    annotations = _required_list(coco, 'annotations', where)
    per_image = {}
    crowd = {}
    others = other_category_ids(coco)
    for annotation in annotations:
        if annotation.get('category_id') in others:
            continue
        if 'image_id' not in annotation:
            raise InputFileError(f"{where}: annotation {annotation.get('id', '?')} has no 'image_id'")
        if annotation.get('iscrowd', 0):
            if 'segmentation' not in annotation:
                raise InputFileError(f"{where}: crowd annotation {annotation.get('id', '?')} has no 'segmentation'")
            crowd.setdefault(annotation['image_id'], []).append(annotation['segmentation'])
            continue
        _check_person_annotation(annotation, where, num_dataset_keypoints)
        if annotation['num_keypoints'] != 0:
            per_image.setdefault(annotation['image_id'], ([], []))[0].append(annotation)
    for image_id, segmentations in crowd.items():
        if image_id in per_image:
            per_image[image_id][1].extend(segmentations)
    return per_image


def _bbox_center(bbox):
    return [bbox[0] + bbox[2] / 2, bbox[1] + bbox[3] / 2]


def _is_main_candidate(annotation, used_keypoints):
    return _labelled(annotation, used_keypoints) >= MIN_MAIN_KEYPOINTS and annotation_area(annotation) >= MIN_MAIN_AREA


def _labelled(annotation, used_keypoints) -> int:
    """Labelled keypoints the schema reads: the annotation's ``num_keypoints`` (the original's count) when
    it reads them all, else those of its keypoints with v > 0."""
    if used_keypoints is None:
        return annotation['num_keypoints']
    return sum(1 for i in used_keypoints if annotation['keypoints'][3 * i + 2] > 0)


def _is_close_to_previous(center, previous_mains):
    """previous_mains: [(center_x, center_y, bbox_width)] of the image's kept main persons."""
    for previous_x, previous_y, previous_width in previous_mains:
        distance = ((center[0] - previous_x) ** 2 + (center[1] - previous_y) ** 2) ** 0.5
        if distance < previous_width * MIN_CENTER_DISTANCE_TO_WIDTH:
            return True
    return False


def _prepare_other(annotation, net_input_size):
    return {
        'objpos': _bbox_center(annotation['bbox']),
        'bbox': annotation['bbox'],
        'segment_area': annotation_area(annotation),
        'scale_provided': annotation['bbox'][3] / net_input_size,
        'num_keypoints': annotation['num_keypoints'],
        'keypoints': prepare_keypoints(annotation['keypoints']),
    }


def prepare_annotations(coco, net_input_size=368, source=None, schema=None):
    """The original ``prepare_annotations`` on a whole COCO person-keypoints JSON object.

    Per image (see :func:`group_annotations_per_image`), every person with >= 5 labelled keypoints (of
    those the keypoint schema reads; coco18 reads all of COCO's: the annotation's num_keypoints),
    area >= 32 * 32 and a bbox centre not closer than 0.3 x the bbox width of an earlier kept main
    person becomes the main person of one label. The label's others are all other persons of the
    image with keypoints, including ones rejected as main.

    Args:
        coco: the parsed JSON (dict with 'images' and 'annotations').
        net_input_size: training input size; scale_provided = bbox height / net_input_size.
        source: name of the file, for error messages.
        schema: the :class:`lwop_jax.schema.KeypointSchema` trained (None: coco18); its keypoints must be in
            the file's category (SchemaError otherwise).
    Returns:
        list of dicts with the original's keys, in its order: img_paths, img_width, img_height,
        objpos, image_id, bbox, segment_area, scale_provided, num_keypoints, segmentations (crowd
        segmentations of the image), keypoints (D [x, y, flag], the dataset order),
        processed_other_annotations (dicts: objpos, bbox, segment_area, scale_provided,
        num_keypoints, keypoints).
    Raises:
        ValueError: not a COCO person-keypoints object, or an annotation of an unknown image.
    """
    where = source or 'COCO annotations'
    _required_list(coco, 'annotations', where)
    names = dataset_keypoint_names(coco, where)
    layout = (schema or load_schema()).dataset_layout(names, where)
    used = layout.used_dataset_keypoints
    per_image = group_annotations_per_image(coco, source, len(names))
    images = {image['id']: image for image in _required_list(coco, 'images', where)}
    prepared = []
    for image_id, (persons, crowd_segmentations) in per_image.items():
        if image_id not in images:
            raise InputFileError(f"{where}: annotations refer to image id {image_id}, absent from 'images'")
        image = images[image_id]
        for annotation in main_persons(persons, None if len(used) == len(names) else used):
            center = _bbox_center(annotation['bbox'])
            label = {
                'img_paths': image['file_name'],
                'img_width': image['width'],
                'img_height': image['height'],
                'objpos': center,
                'image_id': image_id,
                'bbox': annotation['bbox'],
                'segment_area': annotation_area(annotation),
                'scale_provided': annotation['bbox'][3] / net_input_size,
                'num_keypoints': annotation['num_keypoints'],
                'segmentations': list(crowd_segmentations),
                'keypoints': prepare_keypoints(annotation['keypoints']),
                # The original skips others by dict equality, so an exact duplicate of the main
                # annotation is skipped too.
                'processed_other_annotations': [
                    _prepare_other(other, net_input_size) for other in persons if other != annotation
                ],
            }
            prepared.append(label)
    return prepared


def main_persons(persons, used_keypoints=None):
    """The persons of one image that become the main person of a label, in order (the selection that
    :func:`prepare_annotations` describes; ``used_keypoints`` None: count the annotation's num_keypoints)."""
    previous_mains = []
    for annotation in persons:
        if not _is_main_candidate(annotation, used_keypoints):
            continue
        center = _bbox_center(annotation['bbox'])
        if _is_close_to_previous(center, previous_mains):
            continue
        previous_mains.append((center[0], center[1], annotation['bbox'][2]))
        yield annotation


def check_coco_files(annotations_json, images_dir):
    """InputFileError (one line) when the images folder or the annotation file is missing."""
    if not os.path.isdir(images_dir):
        raise InputFileError(
            f'{images_dir}: COCO images folder not found (expected e.g. train2017/ with the JPEG files)'
        )
    if not os.path.isfile(annotations_json):
        raise InputFileError(
            f'{annotations_json}: COCO annotation file not found (expected e.g. '
            'annotations/person_keypoints_train2017.json)'
        )


class TrainingSet(NamedTuple):
    """Prepared labels (keypoints in the dataset's order) and where the schema's keypoints are among them."""

    labels: list
    layout: DatasetLayout


def load_training_labels(annotations_json, images_dir, net_input_size=368):
    """The labels of :func:`load_training_set` for coco18 (the original's skeleton)."""
    return load_training_set(annotations_json, images_dir, net_input_size).labels


def load_training_set(annotations_json, images_dir, net_input_size=368, schema=None) -> TrainingSet:
    """Read and prepare the training labels for a keypoint schema (None: coco18), checking the COCO layout
    first.

    Raises:
        InputFileError: the images folder or the JSON file is missing, the JSON is not valid or not COCO
            person keypoints, its category lacks a keypoint the schema needs, or no image is there (one
            line: file + problem).
    Images that the labels name but that are absent are only counted and logged here; the
    pipeline skips them.
    """
    annotations_json, images_dir = os.fspath(annotations_json), os.fspath(images_dir)
    check_coco_files(annotations_json, images_dir)
    coco = load_coco_json(annotations_json)
    schema = schema or load_schema()
    layout = schema.dataset_layout(dataset_keypoint_names(coco, annotations_json), annotations_json)
    labels = prepare_annotations(coco, net_input_size, source=annotations_json, schema=schema)
    if not labels:
        raise InputFileError(f'{annotations_json}: no person qualifies as a training sample')
    files = sorted({label['img_paths'] for label in labels})
    missing = [name for name in files if not os.path.isfile(os.path.join(images_dir, name))]
    if len(missing) == len(files):
        raise InputFileError(
            f'{images_dir}: none of the {len(files)} images of {annotations_json} is here (e.g. {missing[0]})'
        )
    if missing:
        logger.warning(
            '%d of %d images of %s are missing from %s (e.g. %s); their samples will be skipped',
            len(missing),
            len(files),
            annotations_json,
            images_dir,
            missing[0],
        )
    return TrainingSet(labels, layout)
