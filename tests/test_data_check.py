"""`lwop data check`: each planted defect reported, counts equal to what training selects, image headers read
as OpenCV decodes, and bad input in one line."""

import copy
import json
import shutil

import cv2
import numpy as np
import pytest
from cli_runs import lwop_in_process as lwop

from lwop_jax import synthetic
from lwop_jax.data import check, coco, image_files
from lwop_jax.data.samples import UnreadableImage
from lwop_jax.schema import schema_from_json

UPPER_BODY = {
    'name': 'upper_body',
    'keypoints': ['l_sho', 'r_sho', 'l_elb', 'r_elb', 'l_hip', 'r_hip', 'chest'],
    'source': {'l_sho': 'left_shoulder', 'r_sho': 'right_shoulder', 'l_elb': 'left_elbow', 'r_elb': 'right_elbow',
               'l_hip': 'left_hip', 'r_hip': 'right_hip'},
    'derived': {'chest': ['left_shoulder', 'right_shoulder']},
    'limbs': [['chest', 'l_sho'], ['chest', 'r_sho'], ['l_sho', 'l_elb'], ['r_sho', 'r_elb'], ['l_sho', 'l_hip'],
              ['r_sho', 'r_hip']],
    'flip_pairs': [['l_sho', 'r_sho'], ['l_elb', 'r_elb'], ['l_hip', 'r_hip']],
    'sigmas': {'l_sho': 0.079, 'r_sho': 0.079, 'l_elb': 0.072, 'r_elb': 0.072, 'l_hip': 0.107, 'r_hip': 0.107,
               'chest': 0.079},
}  # fmt: skip


@pytest.fixture(scope='module')
def dataset(tmp_path_factory):
    """A small synthetic set with crowd regions: (annotations.json, images folder, its JSON content)."""
    folder = tmp_path_factory.mktemp('check')
    labels = synthetic.generate_dataset(folder, 8, seed=5, crowd_probability=0.5)
    return labels, folder / 'images', json.loads(labels.read_text())


def first_keypoint(annotation, flags=(1, 2)):
    """Index of the first keypoint of an annotation with one of these flags."""
    return next(k for k in range(len(annotation['keypoints']) // 3) if annotation['keypoints'][3 * k + 2] in flags)


def test_clean_synthetic_set_passes_and_counts_what_training_selects(dataset, capsys):
    labels, images, content = dataset
    code, out, _ = lwop(capsys, 'data', 'check', labels, '--images', images)
    assert code == 0, out
    assert '0 errors' in out
    report = check.check_dataset(labels, images)
    crowds = [a for a in content['annotations'] if a['iscrowd']]
    assert report.crowd_regions == len(crowds) > 0
    assert report.crowd_images == len({a['image_id'] for a in crowds})
    assert report.samples == len(coco.prepare_annotations(content))
    persons = [a for a in content['annotations'] if not a['iscrowd']]
    assert report.usable == sum(1 for a in persons if a['num_keypoints'] >= 5)
    flags = np.array([a['keypoints'] for a in persons]).reshape(len(persons), 17, 3)[..., 2]
    assert report.labelled_per_keypoint == tuple(int(n) for n in (flags > 0).sum(0))
    assert report.visible_per_keypoint == tuple(int(n) for n in (flags == 2).sum(0))


def test_a_schema_reading_fewer_keypoints_counts_only_those(dataset):
    labels, images, content = dataset
    schema = schema_from_json(UPPER_BODY, 'upper_body.json')
    report = check.check_dataset(labels, images, schema)
    assert report.samples == len(coco.prepare_annotations(content, schema=schema))
    used = [content['categories'][0]['keypoints'].index(name) for name in
            ('left_shoulder', 'right_shoulder', 'left_elbow', 'right_elbow', 'left_hip', 'right_hip')]  # fmt: skip
    persons = [a for a in content['annotations'] if not a['iscrowd']]
    assert report.usable == sum(1 for a in persons if sum(a['keypoints'][3 * i + 2] > 0 for i in used) >= 5)
    assert report.read_by_schema.count(True) == 6


def plant_defects(content, images_dir):
    """One of each defect, each on its own annotation or image; returns the changed content."""
    content = copy.deepcopy(content)
    persons = [a for a in content['annotations'] if not a['iscrowd'] and a['num_keypoints'] >= 5 and a['area'] >= 1024]
    images = {image['id']: image for image in content['images']}
    # an annotation whose keypoint lies outside its image, one outside its box, one with flag 3
    outside_image, outside_box, odd_flag = persons[0], persons[1], persons[2]
    k = first_keypoint(outside_image)
    outside_image['keypoints'][3 * k] = images[outside_image['image_id']]['width'] + 5.0
    k = first_keypoint(outside_box, flags=(2,))
    x, y, w, h = outside_box['bbox']
    outside_box['keypoints'][3 * k : 3 * k + 2] = [x + w + 30, y]
    odd_flag['keypoints'][3 * first_keypoint(odd_flag) + 2] = 3
    # a duplicate annotation id and a duplicate image id
    content['annotations'][-1]['id'] = content['annotations'][0]['id']
    content['images'].append(dict(content['images'][0], file_name='copy_of_first.jpg'))
    # a missing image and an unreadable one, each with a usable person
    missing = dict(content['images'][0], id=901, file_name='missing.jpg')
    unreadable = dict(content['images'][0], id=902, file_name='unreadable.jpg')
    (images_dir / 'unreadable.jpg').write_bytes(b'not an image at all')
    content['images'] += [missing, unreadable]
    content['annotations'] += [dict(persons[3], id=9001, image_id=901), dict(persons[3], id=9002, image_id=902)]
    # an image with no usable person (2 labelled keypoints)
    shutil.copy(images_dir / content['images'][0]['file_name'], images_dir / 'few.jpg')
    content['images'].append(dict(content['images'][0], id=903, file_name='few.jpg'))
    few = dict(persons[4], id=9003, image_id=903, keypoints=[0] * 51, num_keypoints=2)
    few['keypoints'][:6] = [100, 100, 2, 110, 100, 2]
    content['annotations'].append(few)
    # a malformed annotation and one of an image that is not listed
    content['annotations'].append(dict(persons[4], id=9004, keypoints=[1, 2, 2]))
    content['annotations'].append(dict(persons[4], id=9005, image_id=999))
    return content


def test_each_planted_defect_is_reported(dataset, tmp_path, capsys):
    labels, images, content = dataset
    folder = tmp_path / 'images'
    shutil.copytree(images, folder)
    planted = tmp_path / 'planted.json'
    planted.write_text(json.dumps(plant_defects(content, folder)))
    code, out, _ = lwop(capsys, 'data', 'check', planted, '--images', folder)
    assert code == 1
    errors = [line for line in out.splitlines() if line.startswith(f'error: {planted}: ')]
    warnings = [line for line in out.splitlines() if line.startswith(f'warning: {planted}: ')]
    expected_errors = [
        '1 duplicate image ids',
        'annotation 9004: 3 keypoint values, expected 51',
        'annotation 9005: image id 999 is not among the images',
        'annotation ids used more than once',
        '1 visibility flags other than 0, 1 and 2 in 1 annotations (values 3',
        f'1 of {len(content["images"]) + 3} images are missing from {folder} (missing.jpg)',
        '1 images training cannot read (unreadable.jpg: not a decodable image)',
    ]
    for text in expected_errors:
        assert sum(text in line for line in errors) == 1, (text, out)
    assert len(errors) == len(expected_errors) - 1  # the two malformed annotations share one line
    for text in ('lie outside their image', 'lie outside their box', 'images have no usable person'):
        assert sum(text in line for line in warnings) == 1, (text, out)
    clean = check.check_dataset(labels, images)
    without = len(content['images']) - clean.sample_images + 1  # few.jpg
    assert f'{without} of {len(content["images"]) + 3} images have no usable person' in out
    assert 'crowd regions on' in out and '0 crowd regions' not in out


def test_keypoints_the_schema_needs_but_the_category_lacks(dataset, tmp_path, capsys):
    labels, images, content = dataset
    content = copy.deepcopy(content)
    names = content['categories'][0]['keypoints']
    names[names.index('left_ear')], names[names.index('right_hip')] = 'ear_l', 'hip_r'
    renamed = tmp_path / 'renamed.json'
    renamed.write_text(json.dumps(content))
    code, out, _ = lwop(capsys, 'data', 'check', renamed, '--images', images)
    assert code == 1
    assert (
        f"error: {renamed}: the category's keypoints lack 2 that schema 'coco18' needs: 'right_hip' (for 'r_hip'); "
        "'left_ear' (for 'l_ear')"
    ) in out.splitlines()


@pytest.mark.parametrize(
    'content, problem',
    [
        ('{"images": [', 'not valid JSON'),
        ('[1, 2]', 'a COCO annotation file must hold a JSON object, got list'),
        ('{"images": []}', "not a COCO annotation file: no 'annotations' list"),
    ],
)
def test_a_broken_or_foreign_json_is_one_line(content, problem, dataset, tmp_path, capsys):
    path = tmp_path / 'labels.json'
    path.write_text(content)
    code, out, err = lwop(capsys, 'data', 'check', path, '--images', dataset[1])
    lines = err.strip().splitlines()
    assert code == 1 and not out and len(lines) == 1
    assert lines[0].startswith(f'error: {path}: ') and problem in lines[0]


def test_a_schema_file_with_an_error_is_one_line(dataset, tmp_path, capsys):
    bad = tmp_path / 'bad_schema.json'
    bad.write_text(json.dumps(dict(UPPER_BODY, limbs=[['chest', 'l_sho'], ['chest', 'nowhere']])))
    code, out, err = lwop(capsys, 'data', 'check', dataset[0], '--images', dataset[1], '--keypoint-schema', bad)
    assert code == 1 and not out
    assert err.strip().splitlines() == [f"error: {bad}: limbs[1]: 'nowhere' is not one of the keypoints"]


def test_image_sizes_from_headers_are_the_decoded_sizes(tmp_path):
    image = np.random.default_rng(0).integers(0, 255, (30, 50, 3), np.uint8)
    for suffix in ('.jpg', '.png', '.bmp'):
        path = tmp_path / f'image{suffix}'
        cv2.imwrite(str(path), image)
        assert image_files.image_size(path) == (50, 30)
    # A JPEG whose EXIF orientation turns it (6: 90 degrees clockwise): OpenCV decodes it 30 wide, 50 high.
    rotated = tmp_path / 'rotated.jpg'
    rotated.write_bytes(with_exif_orientation((tmp_path / 'image.jpg').read_bytes(), 6))
    decoded = cv2.imread(str(rotated))
    assert decoded.shape[:2] == (50, 30)
    assert image_files.image_size(rotated) == (30, 50)
    assert image_files.image_problem(rotated, 30, 50) is None
    assert image_files.image_problem(rotated, 30, 50, decode=True) is None
    assert image_files.image_problem(tmp_path / 'image.png', 40, 30) == 'its size 50x30 is not the annotated 40x30'
    (tmp_path / 'empty.jpg').write_bytes(b'')
    assert image_files.image_problem(tmp_path / 'empty.jpg', 50, 30) == 'empty file'
    # A header past the first 64 KiB (two large APP2 segments, an ICC profile say, before the frame header).
    jpeg = (tmp_path / 'image.jpg').read_bytes()
    padded = tmp_path / 'padded.jpg'
    app2 = b'\xff\xe2' + (65000).to_bytes(2, 'big') + bytes(64998)
    padded.write_bytes(jpeg[:2] + 2 * app2 + jpeg[2:])
    assert 2 * len(app2) > image_files.HEAD_BYTES and cv2.imread(str(padded)).shape[:2] == (30, 50)
    assert image_files.image_size(padded) == (50, 30)
    truncated = tmp_path / 'truncated.jpg'
    truncated.write_bytes((tmp_path / 'image.jpg').read_bytes()[:20])
    with pytest.raises(UnreadableImage, match='broken header: JPEG header is truncated'):
        image_files.image_size(truncated)


def with_exif_orientation(jpeg: bytes, orientation: int) -> bytes:
    """The JPEG with an APP1 EXIF segment (big-endian TIFF, one IFD entry: the orientation) after SOI."""
    tiff = b'MM\x00\x2a\x00\x00\x00\x08' + b'\x00\x01' + b'\x01\x12\x00\x03\x00\x00\x00\x01'
    tiff += orientation.to_bytes(2, 'big') + b'\x00\x00' + b'\x00\x00\x00\x00'
    segment = b'Exif\x00\x00' + tiff
    return jpeg[:2] + b'\xff\xe1' + (len(segment) + 2).to_bytes(2, 'big') + segment + jpeg[2:]
