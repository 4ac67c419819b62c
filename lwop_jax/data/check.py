"""``lwop data check``: what a COCO person-keypoints file and its images hold for training, and what is wrong.

One pass over the annotations (the keypoints of all of them as one array), a header read of every
labelled image (or a full decode, ``decode=True``), and the training labels counted by
:func:`lwop_jax.data.coco.prepare_annotations` itself, so "training samples" is the number training gets.
Errors are what makes training refuse the data, or silently lose or mislabel part of it; warnings are
what training survives but a user should know. NumPy only (pycocotools is not needed).
"""

from __future__ import annotations

import collections
import dataclasses
import os

import numpy as np

from lwop_jax.data import coco, coco_flavours
from lwop_jax.data.image_files import image_problems
from lwop_jax.errors import InputFileError
from lwop_jax.schema import KeypointSchema, load_schema

EXAMPLES = 3  # examples quoted per finding
# A labelled keypoint this far outside its box (pixels) counts as outside it: boxes are often rounded.
BOX_TOLERANCE = 1.0


@dataclasses.dataclass(frozen=True)
class Finding:
    error: bool
    message: str


@dataclasses.dataclass
class DataReport:
    """What :func:`check_dataset` found; ``lines()`` is the printed report."""

    labels: str
    images_dir: str
    schema: str
    dataset_keypoints: tuple[str, ...] = ()
    images_listed: int = 0
    images_labelled: int = 0  # images that annotations refer to: the ones checked on disk
    images_missing: int = 0
    images_unreadable: int = 0
    decoded: bool = False
    persons: int = 0  # non-crowd annotations
    persons_with_keypoints: int = 0
    usable: int = 0
    samples: int = 0
    sample_images: int = 0
    crowd_regions: int = 0
    crowd_images: int = 0
    labelled_per_keypoint: tuple[int, ...] = ()
    visible_per_keypoint: tuple[int, ...] = ()
    read_by_schema: tuple[bool, ...] = ()
    findings: list[Finding] = dataclasses.field(default_factory=list)

    @property
    def errors(self) -> list[str]:
        return [f.message for f in self.findings if f.error]

    @property
    def warnings(self) -> list[str]:
        return [f.message for f in self.findings if not f.error]

    def add(self, error: bool, message: str) -> None:
        self.findings.append(Finding(error, message))

    def lines(self) -> list[str]:
        found = self.images_labelled - self.images_missing - self.images_unreadable
        how = 'decoded' if self.decoded else 'header read; --decode decodes them as training does'
        lines = [
            f'{self.labels}: keypoint schema {self.schema}, images in {self.images_dir}',
            f'images: {self.images_listed} listed, {self.images_labelled} with annotations: {found} found, '
            f'{self.images_missing} missing, {self.images_unreadable} unreadable ({how})',
            f'annotations: {self.persons} persons, {self.persons_with_keypoints} with keypoints, {self.usable} usable '
            "(>= 5 labelled keypoints the schema reads, the original's rule) -> "
            f'{self.samples} training samples on {self.sample_images} images; '
            f'{self.crowd_regions} crowd regions on {self.crowd_images} images (left out of the loss)',
            'labels per keypoint (labelled / visible; * = the schema reads it):',
        ]
        width = max((len(name) for name in self.dataset_keypoints), default=0)
        for name, labelled, visible, read in zip(
            self.dataset_keypoints, self.labelled_per_keypoint, self.visible_per_keypoint, self.read_by_schema
        ):
            lines.append(f'  {"*" if read else " "} {name:<{width}}  {labelled:>8} / {visible}')
        lines += [f'error: {self.labels}: {message}' for message in self.errors]
        lines += [f'warning: {self.labels}: {message}' for message in self.warnings]
        lines.append(f'{len(self.errors)} errors, {len(self.warnings)} warnings')
        return lines


def examples(items, count: int = EXAMPLES) -> str:
    items = list(items)
    return '; '.join(str(item) for item in items[:count]) + ('; ...' if len(items) > count else '')


# --------------------------------------------------------------------------------------- entry point
def check_dataset(
    labels_path, images_dir, schema: KeypointSchema | None = None, decode: bool = False, progress: bool = False
) -> DataReport:
    """Checks a COCO person-keypoints file and its images folder for training with ``schema`` (coco18).

    Raises InputFileError (one line) only when there is nothing to check: the file or the folder is
    missing, the file is not JSON or not COCO (no 'images' / 'annotations' lists), or it has several
    keypoint categories. Everything else is a finding of the report.
    """
    labels_path, images_dir = os.fspath(labels_path), os.fspath(images_dir)
    schema = schema or load_schema()
    coco.check_coco_files(labels_path, images_dir)
    content = coco.load_coco_json(labels_path)
    for key in ('images', 'annotations'):
        if not isinstance(content.get(key), list):
            raise InputFileError(f"{labels_path}: not a COCO annotation file: no '{key}' list")
    names = coco.dataset_keypoint_names(content, labels_path)
    report = DataReport(labels_path, images_dir, schema.name, names)
    images = _index_images(content['images'], report)
    others = coco_flavours.other_category_ids(content)
    persons, values, crowds = _split_annotations(content['annotations'], images, len(names), others, report)
    used, schema_fits = _schema_keypoints(schema, names, report)
    _check_keypoints(persons, values, images, names, used, report)
    _check_crowds(crowds, images, report)
    if schema_fits:  # else training refuses the file: no sample to count
        _count_samples(content, images, persons, crowds, used, report)
    labelled = {a['image_id'] for a in persons} | {a['image_id'] for a in crowds}
    _check_image_files([images[i] for i in images if i in labelled], images_dir, decode, progress, report)
    return report


# --------------------------------------------------------------------------------------- structure
def _index_images(entries, report: DataReport) -> dict:
    """id -> image of the well-formed entries; duplicate ids and malformed entries are errors."""
    images, malformed, duplicates = {}, [], []
    for index, image in enumerate(entries):
        if not isinstance(image, dict) or not isinstance(image.get('file_name'), str):
            malformed.append(f"images[{index}]: no 'file_name'")
        elif not all(isinstance(image.get(key), int) and image[key] > 0 for key in ('width', 'height')):
            malformed.append(f'{image["file_name"]}: no positive integer width and height')
        elif image.get('id') in images:
            duplicates.append(image['id'])
        else:
            images[image['id']] = image
    report.images_listed = len(entries)
    if malformed:
        report.add(True, f'{len(malformed)} malformed image entries ({examples(malformed)})')
    if duplicates:
        report.add(
            True, f'{len(duplicates)} duplicate image ids ({examples(duplicates)}): their annotations are ambiguous'
        )
    return images


def _annotation_problem(annotation, images: dict, num_keypoints: int) -> str | None:
    if not isinstance(annotation, dict):
        return f'not a JSON object: {str(annotation)[:40]}'
    where = f'annotation {annotation.get("id", "?")}'
    if annotation.get('image_id') not in images:
        return f'{where}: image id {annotation.get("image_id")} is not among the images'
    if annotation.get('iscrowd', 0):
        if 'segmentation' not in annotation:
            return f"{where}: a crowd region without 'segmentation'"
        return None
    missing = [key for key in ('keypoints', 'num_keypoints', 'bbox') if key not in annotation]
    if missing:
        return f'{where}: no {", ".join(repr(key) for key in missing)}'
    values, bbox = annotation['keypoints'], annotation['bbox']
    if not isinstance(values, list) or len(values) != 3 * num_keypoints:
        return (
            f'{where}: {len(values) if isinstance(values, list) else "no list of"} keypoint values, '
            f'expected {3 * num_keypoints}'
        )
    if not (isinstance(bbox, list) and len(bbox) == 4 and all(isinstance(v, (int, float)) for v in bbox)):
        return f"{where}: 'bbox' is not [x, y, width, height]"
    if not isinstance(annotation['num_keypoints'], int):
        return f"{where}: 'num_keypoints' is not an integer"
    return None


def _keypoint_values(persons: list, num_keypoints: int, problems: list) -> tuple[list, np.ndarray]:
    """The persons whose keypoint values are all finite numbers, and those values as one (N, D, 3) array
    (one conversion for all; the slow search for the culprits only when it fails)."""
    if not persons:
        return persons, np.zeros((0, num_keypoints, 3))
    try:
        values = np.array([a['keypoints'] for a in persons], np.float64)
    except (TypeError, ValueError):
        values = None
    finite = None if values is None else np.isfinite(values).all(1)
    if finite is None or not finite.all():
        kept = []
        for annotation in persons:
            try:
                good = np.isfinite(np.array(annotation['keypoints'], np.float64)).all()
            except (TypeError, ValueError):
                good = False
            if good:
                kept.append(annotation)
            else:
                problems.append(f'annotation {annotation.get("id", "?")}: keypoint values that are not numbers')
        persons = kept
        values = np.array([a['keypoints'] for a in persons], np.float64)
    return persons, values.reshape(len(persons), num_keypoints, 3)


def _split_annotations(entries, images: dict, num_keypoints: int, other_categories: set, report: DataReport):
    """(persons, their keypoints (N, D, 3), crowd regions) of the well-formed annotations (those of other
    categories left aside)."""
    persons, crowds, problems = [], [], []
    ids = collections.Counter()
    for annotation in entries:
        if isinstance(annotation, dict):
            ids[annotation.get('id')] += 1
            if annotation.get('category_id') in other_categories:
                continue
        problem = _annotation_problem(annotation, images, num_keypoints)
        if problem:
            problems.append(problem)
        elif annotation.get('iscrowd', 0):
            crowds.append(annotation)
        else:
            persons.append(annotation)
    persons, values = _keypoint_values(persons, num_keypoints, problems)
    if problems:
        report.add(True, f'{len(problems)} malformed annotations, left out below ({examples(problems)})')
    duplicates = [i for i, n in ids.items() if n > 1]
    if duplicates:
        report.add(
            True,
            f'{len(duplicates)} annotation ids used more than once ({examples(duplicates)}): '
            'evaluation (pycocotools) keeps one annotation per id',
        )
    report.persons = len(persons)
    return persons, values, crowds


# --------------------------------------------------------------------------------------- keypoints
def _schema_keypoints(schema: KeypointSchema, names: tuple[str, ...], report: DataReport) -> tuple[list[int], bool]:
    """Indices of the dataset keypoints the schema reads (of those the category has), and whether the
    category has them all; an error names those it lacks."""
    index = {name: i for i, name in enumerate(names)}
    needed = [
        (name, keypoint)
        for keypoint, source in zip(schema.keypoints, schema.sources)
        for name in (source if isinstance(source, tuple) else (source,))
    ]
    missing = [f'{name!r} (for {keypoint!r})' for name, keypoint in needed if name not in index]
    if missing:
        report.add(
            True,
            f"the category's keypoints lack {len(missing)} that schema {schema.name!r} needs: {examples(missing, 10)}",
        )
    used = sorted({index[name] for name, _ in needed if name in index})
    report.read_by_schema = tuple(i in used for i in range(len(names)))
    return used, not missing


def _check_keypoints(persons: list, values, images: dict, names: tuple[str, ...], used: list[int], report):
    """Labels per keypoint, usable annotations, and the keypoint findings, over all persons at once."""
    report.labelled_per_keypoint = report.visible_per_keypoint = (0,) * len(names)
    if not persons:
        return
    x, y, v = values[..., 0], values[..., 1], values[..., 2]
    ids = [a.get('id') for a in persons]
    num_keypoints = np.array([a['num_keypoints'] for a in persons], np.float64)
    size = np.array([[images[a['image_id']]['width'], images[a['image_id']]['height']] for a in persons], np.float64)
    box = np.array([a['bbox'] for a in persons], np.float64)

    flagged = (v == 1) | (v == 2)
    report.labelled_per_keypoint = tuple(int(n) for n in flagged.sum(0))
    report.visible_per_keypoint = tuple(int(n) for n in (v == 2).sum(0))
    report.persons_with_keypoints = int((num_keypoints != 0).sum())
    labelled = v > 0  # what the original's rule counts (lwop_jax.data.coco)
    counts = num_keypoints if len(used) == len(names) else labelled[:, used].sum(1)
    report.usable = int(((counts >= coco.MIN_MAIN_KEYPOINTS) & (num_keypoints != 0)).sum())

    odd = ~np.isin(v, (0, 1, 2))
    if odd.any():
        rows = np.flatnonzero(odd.any(1))
        values_found = examples([f'{value:g}' for value in np.unique(v[odd])], 5)
        report.add(
            True,
            f'{int(odd.sum())} visibility flags other than 0, 1 and 2 in {len(rows)} annotations '
            f'(values {values_found}; e.g. annotation {ids[rows[0]]}); training takes them as unlabelled',
        )
    miscounted = np.flatnonzero(num_keypoints != labelled.sum(1))
    if len(miscounted):
        report.add(
            False,
            f'{len(miscounted)} annotations give a num_keypoints other than their number of '
            f"labelled keypoints, which the original's >= 5 rule reads (e.g. annotation {ids[miscounted[0]]}: "
            f'{num_keypoints[miscounted[0]]:g} for {int(labelled[miscounted[0]].sum())})',
        )
    width, height = size[:, :1], size[:, 1:]
    outside_image = flagged & ((x < 0) | (x >= width) | (y < 0) | (y >= height))
    _report_points(report, outside_image, 'outside their image; training drops them', values, ids, names, size)
    x0, y0 = box[:, :1] - BOX_TOLERANCE, box[:, 1:2] - BOX_TOLERANCE
    x1, y1 = x0 + box[:, 2:3] + 2 * BOX_TOLERANCE, y0 + box[:, 3:4] + 2 * BOX_TOLERANCE
    # Only visible ones: a box drawn around what is seen may leave out a hidden limb, as COCO's boxes do.
    outside_box = (v == 2) & ((x < x0) | (x > x1) | (y < y0) | (y > y1))
    _report_points(
        report,
        outside_box,
        'outside their box (the box sets the centre and scale of the training crop)',
        values,
        ids,
        names,
        size,
        'visible',
    )
    unlabelled = [names[i] for i in used if report.labelled_per_keypoint[i] == 0]
    if unlabelled:
        report.add(
            False,
            f'keypoints the schema reads have no label at all: {examples(unlabelled, 10)} '
            '(the network cannot learn them)',
        )


def _report_points(report, where, problem, values, ids, names, size, kind='labelled'):
    if not where.any():
        return
    row, column = np.argwhere(where)[0]
    x, y = values[row, column, :2]
    report.add(
        False,
        f'{int(where.sum())} {kind} keypoints in {int(where.any(1).sum())} annotations lie '
        f'{problem} (e.g. annotation {ids[row]}: {names[column]!r} at ({x:g}, {y:g}) in an image of '
        f'{size[row, 0]:g}x{size[row, 1]:g})',
    )


# --------------------------------------------------------------------------------------- crowds, samples
def _segmentation_problem(segmentation, image) -> str | None:
    if isinstance(segmentation, list):
        numbers = (isinstance(v, (int, float)) for polygon in segmentation for v in polygon)
        if all(isinstance(p, list) and len(p) >= 6 for p in segmentation) and all(numbers):
            return None
        return 'polygons that are not lists of at least 3 x, y pairs'
    if isinstance(segmentation, dict) and isinstance(segmentation.get('counts'), (list, str)):
        size = segmentation.get('size')
        if size is None or list(size) == [image['height'], image['width']]:
            return None
        return f"RLE size {size} is not the image's [{image['height']}, {image['width']}]"
    return 'neither polygons nor RLE'


def _check_crowds(crowds: list, images: dict, report: DataReport) -> None:
    problems = []
    for annotation in crowds:
        problem = _segmentation_problem(annotation['segmentation'], images[annotation['image_id']])
        if problem:
            problems.append(f'annotation {annotation.get("id", "?")}: {problem}')
    report.crowd_regions = len(crowds)
    report.crowd_images = len({a['image_id'] for a in crowds})
    if problems:
        report.add(
            True, f'{len(problems)} crowd regions whose segmentation training cannot read ({examples(problems)})'
        )


def _count_samples(content, images: dict, persons: list, crowds: list, used: list[int], report: DataReport) -> None:
    """Training samples as :func:`lwop_jax.data.coco.prepare_annotations` selects them (its grouping and
    :func:`lwop_jax.data.coco.main_persons`, without preparing the labels) from the well-formed annotations,
    and the images that have none."""
    well_formed = {'categories': content.get('categories') or [], 'annotations': persons + crowds}
    names = report.dataset_keypoints
    per_image = coco.group_annotations_per_image(well_formed, report.labels, len(names))
    used_keypoints = None if len(used) == len(names) else used
    samples = {
        image_id: sum(1 for _ in coco.main_persons(people, used_keypoints))
        for image_id, (people, _) in per_image.items()
    }
    report.samples = sum(samples.values())
    report.sample_images = sum(1 for count in samples.values() if count)
    if not report.samples:
        report.add(True, 'no annotation qualifies as a training sample: training refuses the file')
        return
    without = [image['file_name'] for image_id, image in images.items() if not samples.get(image_id)]
    if without:
        report.add(
            False,
            f'{len(without)} of {len(images)} images have no usable person; training never reads '
            f'them (e.g. {examples(without)})',
        )


# --------------------------------------------------------------------------------------- image files
def _check_image_files(images: list, images_dir: str, decode: bool, progress: bool, report: DataReport) -> None:
    report.images_labelled, report.decoded = len(images), decode
    missing, unreadable = image_problems(images, images_dir, decode, progress)
    report.images_missing, report.images_unreadable = len(missing), len(unreadable)
    if missing:
        report.add(True, f'{len(missing)} of {len(images)} images are missing from {images_dir} ({examples(missing)})')
    if unreadable:
        report.add(True, f'{len(unreadable)} images training cannot read ({examples(unreadable)})')
