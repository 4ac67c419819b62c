"""Data from elsewhere: Ultralytics YOLO-pose labels through `lwop data import-yolo` -> `lwop data check` ->
`lwop train`, and COCO keypoint files in CVAT's and Label Studio's flavours (made by hand from what their
exporters write: Datumaro's COCO keypoints converter for CVAT, label_studio_sdk's convert_to_coco for
Label Studio) through the data check and the training stream."""

import copy
import json
import os
import pathlib
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest
from cli_runs import lwop_in_process

from lwop_jax import synthetic
from lwop_jax.data import check, yolo
from lwop_jax.schema import load_schema
from lwop_jax.skeleton import COCO_KEYPOINT_NAMES

# The lines here hold values normalised to 6 decimals (error <= 0.5e-6 each) and import-yolo rounds pixels to
# 3 decimals (<= 0.5e-3 px); a box corner cx - w / 2 adds two such errors (0.75e-6), times the image width 640.
YOLO_TOLERANCE = 0.75e-6 * 640 + 0.5e-3 + 1e-9


@pytest.fixture(scope='module')
def dataset(tmp_path_factory):
    folder = tmp_path_factory.mktemp('import')
    labels = synthetic.generate_dataset(folder, 6, seed=2, crowd_probability=0.5)
    return labels, folder / 'images', json.loads(labels.read_text())


def lwop(capsys, *arguments):
    """(exit status, stdout, the error and warning lines of stderr) of lwop run in-process."""
    code, out, err = lwop_in_process(capsys, *arguments)
    return code, out, [line for line in err.splitlines() if line.startswith(('error:', 'warning:'))]


# ------------------------------------------------------------------------------------------------ YOLO
def yolo_line(annotation, width, height, with_flags):
    """The Ultralytics line of a COCO person: normalised box centre and size, then x y v (or x y, an
    unlabelled point written 0 0 or -1 -1 as converters do)."""
    x, y, w, h = annotation['bbox']
    values = [0, (x + w / 2) / width, (y + h / 2) / height, w / width, h / height]
    points = np.array(annotation['keypoints'], np.float64).reshape(-1, 3)
    for k, (px, py, v) in enumerate(points):
        if with_flags:
            values += [px / width, py / height, v]
        elif v == 0:
            values += [-1, -1] if k % 2 else [0, 0]
        else:
            values += [px / width, py / height]
    return ' '.join(f'{value:.6f}' for value in values)


def write_yolo(content, labels_dir):
    """One label file per image; the first half of the images with x y v, the others with x y."""
    labels_dir.mkdir()
    for index, image in enumerate(content['images']):
        people = [a for a in content['annotations'] if a['image_id'] == image['id'] and not a['iscrowd']]
        lines = [yolo_line(a, image['width'], image['height'], index < 3) for a in people]
        (labels_dir / pathlib.Path(image['file_name']).with_suffix('.txt')).write_text('\n'.join(lines) + '\n')


def test_yolo_lines_with_and_without_visibility():
    keypoints = ' '.join(['0.5 0.25 2', '0 0 0', '0.1 0.2 1'])
    label, box, points = yolo.parse_line(f'3 0.5 0.5 0.2 0.4 {keypoints}', 3)
    assert label == 3 and box.tolist() == [0.5, 0.5, 0.2, 0.4]
    assert points.tolist() == [[0.5, 0.25, 2], [0, 0, 0], [0.1, 0.2, 1]]
    _, _, points = yolo.parse_line('0 0.5 0.5 0.2 0.4 0.5 0.25 -1 -1 0 0 0.3 0', 4)
    assert points[:, 2].tolist() == [2, 0, 0, 2]  # negative (Ultralytics) and 0 0 (COCO) are unlabelled
    annotation = yolo.person_annotation(box, np.array([[0.5, 0.25, 2], [0.7, 0.1, 0]]), 200, 100)
    assert annotation['bbox'] == [80.0, 30.0, 40.0, 40.0] and annotation['area'] == 1600.0
    assert annotation['keypoints'] == [100.0, 25.0, 2.0, 0, 0, 0] and annotation['num_keypoints'] == 1


@pytest.mark.parametrize(
    'line, problem',
    [
        ('0 0.5 0.5 0.2 0.2 0.1 0.1', '7 columns; expected 11 (class, box, x y v for each of 2 keypoints) or 9'),
        ('0 0.5 0.5 0.2 0.2 0.1 0.1 2 0.1 abc 2', "not a number: 'abc'"),
        ('0 0.5 0.5 0.2 0.2 0.1 0.1 5 0.1 0.1 2', 'visibility 5 is not 0, 1 or 2'),
        ('0 1.5 0.5 0.2 0.2 0.1 0.1 2 0.1 0.1 2', 'box 1.5 0.5 0.2 0.2 is not normalised to [0, 1]'),
        ('0.5 0.5 0.5 0.2 0.2 0.1 0.1 2 0.1 0.1 2', 'class 0.5 is not a non-negative integer'),
    ],
)
def test_bad_yolo_lines_say_why(line, problem):
    with pytest.raises(yolo.BadLine, match=re.escape(problem)):
        yolo.parse_line(line, 2)


def test_schema_columns_are_cocos_order_for_coco_schemas():
    assert yolo.schema_dataset_keypoints(load_schema('coco18')) == COCO_KEYPOINT_NAMES
    assert yolo.schema_dataset_keypoints(load_schema('coco17')) == COCO_KEYPOINT_NAMES
    figure = yolo.schema_dataset_keypoints(load_schema('figure'))
    assert figure[:3] == ('neck', 'head', 'shoulder_r') and len(figure) == 16


@pytest.fixture(scope='module')
def yolo_import(dataset, tmp_path_factory):
    """The synthetic set as YOLO labels with planted bad lines and a label file without its image,
    imported: (exit status, stdout, error lines, output JSON, labels folder)."""
    _, images, content = dataset
    folder = tmp_path_factory.mktemp('yolo')
    labels_dir = folder / 'labels'
    write_yolo(content, labels_dir)
    first = labels_dir / pathlib.Path(content['images'][0]['file_name']).with_suffix('.txt')
    good = first.read_text()
    first.write_text(good + '0 0.5 0.5 0.2 0.2 0.1 0.1\n0 0.5 0.5 0.2 0.2 ' + 'abc ' * 51 + '\n')
    (labels_dir / 'no_such_image.txt').write_text(good)
    out = folder / 'imported.json'
    arguments = ['data', 'import-yolo', labels_dir, '--images', images, '--out', out, '--keypoint-schema', 'coco18']
    return arguments, out, labels_dir, first


def test_yolo_import_reports_bad_lines_and_keeps_the_rest(yolo_import, dataset, capsys):
    arguments, out, labels_dir, first = yolo_import
    _, images, content = dataset
    code, stdout, errors = lwop(capsys, *arguments)
    assert code == 1
    assert errors == [
        f'error: {first}:{len(first.read_text().splitlines()) - 1}: 7 columns; expected 56 (class, box, x y v for '
        'each of 17 keypoints) or 39 (x y without v)',
        f"error: {first}:{len(first.read_text().splitlines())}: not a number: 'abc'",
        f'error: {labels_dir / "no_such_image.txt"}: no image of this name in {images}',
    ]
    imported = json.loads(out.read_text())
    assert imported['categories'][0]['keypoints'] == list(COCO_KEYPOINT_NAMES)
    persons = [a for a in content['annotations'] if not a['iscrowd']]
    assert len(imported['annotations']) == len(persons)
    assert f'{out}: {len(persons)} persons on {len(content["images"])} images' in stdout
    by_file = {image['file_name']: image['id'] for image in imported['images']}
    for index, image in enumerate(content['images']):
        original = [a for a in persons if a['image_id'] == image['id']]
        mine = [a for a in imported['annotations'] if a['image_id'] == by_file[image['file_name']]]
        assert len(mine) == len(original)
        for a, b in zip(original, mine):
            np.testing.assert_allclose(b['bbox'], a['bbox'], atol=YOLO_TOLERANCE)
            expected = np.array(a['keypoints'], np.float64).reshape(-1, 3)
            got = np.array(b['keypoints']).reshape(-1, 3)
            if index >= 3:  # x y lines: every labelled point comes back visible
                expected[:, 2] = np.where(expected[:, 2] > 0, 2, 0)
            np.testing.assert_array_equal(got[:, 2], expected[:, 2])
            labelled = expected[:, 2] > 0
            np.testing.assert_allclose(got[labelled, :2], expected[labelled, :2], atol=YOLO_TOLERANCE)
            assert b['num_keypoints'] == int(labelled.sum())


def test_an_images_folder_without_the_labelled_files_is_one_line(yolo_import, tmp_path, capsys):
    arguments, out, labels_dir, _ = yolo_import
    empty = tmp_path / 'elsewhere'
    empty.mkdir()
    names = ','.join(COCO_KEYPOINT_NAMES)
    arguments = ['data', 'import-yolo', labels_dir, '--images', empty, '--out', tmp_path / 'x.json']
    code, stdout, errors = lwop(capsys, *arguments, '--keypoint-names', names)
    assert code == 1 and not stdout and len(errors) == 1
    assert errors[0].startswith(f'error: {empty}: none of the 7 labelled images is here (e.g. ')
    assert not (tmp_path / 'x.json').exists()


@pytest.mark.slow
def test_yolo_round_trip_checks_and_trains(yolo_import, dataset, tmp_path, capsys):
    """import-yolo -> data check -> lwop train (a few iterations of a small network)."""
    pytest.importorskip('tensorflow')
    arguments, out, _, _ = yolo_import
    images = dataset[1]
    lwop(capsys, *arguments)
    code, stdout, _ = lwop(capsys, 'data', 'check', out, '--images', images)
    assert code == 0, stdout
    report = check.check_dataset(out, images)
    assert report.samples > 0 and not report.errors
    workdir = tmp_path / 'run'
    result = subprocess.run(
        [sys.executable, '-m', 'lwop_jax', 'train', '--config', 'tiny', '--workdir', str(workdir),
         f'--config.train_labels={out}', f'--config.train_images={images}', '--config.crop_size=64',
         '--config.batch_size=2', '--config.num_refinement_stages=0', '--config.backbone_width=0.5',
         '--config.backbone_depth=7', '--config.num_channels=32', '--config.num_train_steps=2',
         '--config.checkpoint_after=2', '--config.val_after=0', '--config.image_summary_after=0'],
        cwd=tmp_path, capture_output=True, text=True, timeout=600, env=dict(os.environ, JAX_PLATFORMS='cpu'),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert (workdir / 'checkpoints' / '2').is_dir()


# ------------------------------------------------------------------------------------- CVAT, Label Studio
def cvat_flavour(content):
    """What CVAT's "COCO Keypoints 1.0" export (Datumaro's keypoints converter) writes for skeletons drawn
    without a box: 1-based ids, an image entry with license and url fields, a category per label (those
    without a skeleton have empty keypoints), segmentation [] and area = the skeleton box's (all its points,
    an "outside" one keeping its coordinates, v 0), visibility 0 outside / 1 occluded / 2 visible,
    num_keypoints = points not outside, and the annotation's attributes; a crowd region (an is_crowd group)
    as uncompressed RLE."""
    exported = copy.deepcopy(content)
    for image in exported['images']:
        image.update(license=0, flickr_url='', coco_url='', date_captured=0)
    category = exported['categories'][0]
    category.update(supercategory='', skeleton=[[1, 2], [1, 3], [2, 4], [3, 5]])
    exported['categories'].append({'id': 2, 'name': 'car', 'supercategory': '', 'keypoints': [], 'skeleton': []})
    exported['annotations'] = []
    for annotation in content['annotations']:
        if annotation['iscrowd']:
            exported['annotations'].append({
                'id': len(exported['annotations']) + 1, 'image_id': annotation['image_id'], 'category_id': 1,
                'segmentation': annotation['segmentation'], 'area': float(annotation['area']),
                'bbox': annotation['bbox'], 'iscrowd': 1, 'attributes': {'occluded': False},
                'keypoints': [0] * len(annotation['keypoints']), 'num_keypoints': 0,
            })  # fmt: skip
            continue
        points = np.array(annotation['keypoints'], np.float64).reshape(-1, 3)
        x, y, w, h = annotation['bbox']
        points[points[:, 2] == 0, :2] = (x + w / 2, y + h / 2)  # an outside point stays where it was drawn
        x0, y0 = points[:, :2].min(0)
        x1, y1 = points[:, :2].max(0)
        exported['annotations'].append({
            'id': len(exported['annotations']) + 1, 'image_id': annotation['image_id'], 'category_id': 1,
            'segmentation': [], 'area': float((x1 - x0) * (y1 - y0)), 'bbox': [x0, y0, x1 - x0, y1 - y0],
            'iscrowd': 0, 'attributes': {'occluded': False, 'keyframe': True},
            'keypoints': points.ravel().tolist(), 'num_keypoints': int((points[:, 2] != 0).sum()),
        })  # fmt: skip
    return exported


def label_studio_flavour(content, images_dir, export_dir):
    """What Label Studio's COCO export (label_studio_sdk converter: convert_to_coco with KeyPointLabels)
    writes: ids from 0, images at images/<hash>-<name> of the export folder, the rectangle labels' category
    (no keypoints) and one 'default' category with the keypoint labels; per image ONE keypoint annotation
    (it merges an image's points: here its person with most points), integer pixels, v 2 or 0, a box tight
    around the labelled points, no area and no segmentation; the rectangles as annotations of their own."""
    (export_dir / 'images').mkdir(parents=True)
    exported = {'images': [], 'categories': [{'id': 0, 'name': 'person_box'}], 'annotations': [],
                'info': {'year': 2025, 'version': '1.0', 'contributor': 'Label Studio'}}  # fmt: skip
    exported['categories'].append({'id': 1, 'name': 'default', 'supercategory': 'default',
                                   'keypoints': content['categories'][0]['keypoints'], 'skeleton': []})  # fmt: skip
    for image in content['images']:
        people = [a for a in content['annotations'] if a['image_id'] == image['id'] and not a['iscrowd']]
        if not people:
            continue
        image_id, name = len(exported['images']), f'images/{image["id"]:08x}-{image["file_name"]}'
        shutil.copy(images_dir / image['file_name'], export_dir / name)
        exported['images'].append({'width': image['width'], 'height': image['height'], 'id': image_id,
                                   'file_name': name})  # fmt: skip
        person = max(people, key=lambda a: a['num_keypoints'])
        x, y, w, h = person['bbox']
        exported['annotations'].append({'id': len(exported['annotations']), 'image_id': image_id, 'category_id': 0,
                                        'segmentation': [], 'bbox': [x, y, w, h], 'ignore': 0, 'iscrowd': 0,
                                        'area': w * h})  # fmt: skip
        points = np.array(person['keypoints'], np.float64).reshape(-1, 3)
        labelled = points[:, 2] > 0
        points = np.where(labelled[:, None], np.c_[np.rint(points[:, :2]), np.full(len(points), 2)], 0)
        x0, y0 = points[labelled, :2].min(0)
        x1, y1 = points[labelled, :2].max(0)
        exported['annotations'].append({
            'id': len(exported['annotations']), 'image_id': image_id, 'category_id': 1,
            'keypoints': [int(v) for v in points.ravel()], 'num_keypoints': int(labelled.sum()),
            'bbox': [int(x0), int(y0), int(x1 - x0), int(y1 - y0)], 'iscrowd': 0,
        })  # fmt: skip
    return exported


@pytest.mark.parametrize('flavour', ['cvat', 'label_studio'])
def test_labelling_tools_coco_flavours_pass_the_check_and_feed_training(flavour, dataset, tmp_path, capsys):
    pytest.importorskip('tensorflow')
    from lwop_jax.configs import default
    from lwop_jax.training import data as training_data

    _, images, content = dataset
    if flavour == 'cvat':
        exported, images_dir = cvat_flavour(content), images
    else:
        images_dir = tmp_path / 'export'
        exported = label_studio_flavour(content, images, images_dir)
    labels = tmp_path / f'{flavour}.json'
    labels.write_text(json.dumps(exported))
    code, stdout, _ = lwop(capsys, 'data', 'check', labels, '--images', images_dir)
    assert code == 0, stdout
    report = check.check_dataset(labels, images_dir)
    assert report.samples > 0 and report.images_missing == report.images_unreadable == 0
    crowds = sum(1 for a in content['annotations'] if a['iscrowd'])
    assert report.crowd_regions == (crowds if flavour == 'cvat' else 0) and crowds > 0

    config = default.get_config()
    # label_net_input_size = crop_size: a person fills the crop as a 368 crop holds it (the whole person).
    config.update(train_labels=str(labels), train_images=str(images_dir), crop_size=64, label_net_input_size=64,
                  batch_size=4, num_parallel_calls=1)  # fmt: skip
    stream = training_data.train_data_from_config(config)
    assert stream.num_examples == report.samples
    batch = next(stream.batches(0))
    assert batch['heatmaps'].shape == (4, 8, 8, 19) and batch['pafs'].shape == (4, 8, 8, 38)
    assert (batch['heatmaps'][..., :18].max(axis=(1, 2, 3)) > 0.5).all()  # every sample has a person's targets
