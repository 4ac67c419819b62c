"""Synthetic COCO person-keypoint data: format, honest visibility flags, determinism, crowds, labels."""

import contextlib
import io
import json
import math
import subprocess
import sys

import numpy as np
import pytest

from lwop_jax import synthetic
from lwop_jax.data.coco import prepare_annotations
from lwop_jax.data.crowd_mask import crowd_mask
from lwop_jax.skeleton import COCO_KEYPOINT_NAMES, COCO_SKELETON
from lwop_jax.synthetic.annotations import rle_encode
from lwop_jax.synthetic.body import (
    BODY_LENGTHS,
    JOINT_LIMITS,
    KEYPOINT_PARTS,
    PART_NAMES,
    face_points_away,
    sample_pose,
    skeleton_3d,
)
from lwop_jax.synthetic.scene import MIN_ANNOTATED_AREA

pycocotools = pytest.importorskip('pycocotools')
from pycocotools import mask as mask_utils  # noqa: E402
from pycocotools.coco import COCO  # noqa: E402
from pycocotools.cocoeval import COCOeval  # noqa: E402

WIDTH, HEIGHT = 320, 240  # small images keep the tests fast; the generator scales with the image
NUM_IMAGES = 24
KP = {name: index for index, name in enumerate(COCO_KEYPOINT_NAMES)}


def quiet(function, *args):
    with contextlib.redirect_stdout(io.StringIO()):
        return function(*args)


@pytest.fixture(scope='module')
def dataset(tmp_path_factory):
    """(folder, annotation path) of a small generated set."""
    folder = tmp_path_factory.mktemp('synthetic')
    path = synthetic.generate_dataset(folder, NUM_IMAGES, seed=7, width=WIDTH, height=HEIGHT, max_people=5)
    return folder, path


@pytest.fixture(scope='module')
def coco(dataset):
    return quiet(COCO, str(dataset[1]))


def keypoint_pixel(x, y):
    """The pixel a keypoint falls on (cv2 draws pixel centres at integer coordinates)."""
    return int(math.floor(y + 0.5)), int(math.floor(x + 0.5))


# ------------------------------------------------------------------------------------------ format
def test_files_and_categories(dataset, coco):
    folder, path = dataset
    assert path == folder / 'annotations.json'
    assert not [p for p in folder.rglob('*') if p.name.startswith('.')], 'temporary files left behind'
    assert len(coco.dataset['images']) == NUM_IMAGES
    for image in coco.dataset['images']:
        assert set(image) >= {'id', 'file_name', 'width', 'height'}
        assert (image['width'], image['height']) == (WIDTH, HEIGHT)
        assert (folder / 'images' / image['file_name']).is_file()
    assert coco.dataset['categories'] == [
        {
            'id': 1,
            'name': 'person',
            'supercategory': 'person',
            'keypoints': list(COCO_KEYPOINT_NAMES),
            'skeleton': [list(pair) for pair in COCO_SKELETON],
        }
    ]


def test_annotation_structure(coco):
    annotations = coco.dataset['annotations']
    assert len({a['id'] for a in annotations}) == len(annotations)
    people = [a for a in annotations if not a['iscrowd']]
    assert len(people) >= NUM_IMAGES
    for annotation in annotations:
        assert set(annotation) >= {
            'id',
            'image_id',
            'category_id',
            'keypoints',
            'num_keypoints',
            'bbox',
            'area',
            'segmentation',
            'iscrowd',
        }
        assert annotation['category_id'] == 1
        keypoints = np.array(annotation['keypoints'], dtype=np.float64).reshape(17, 3)
        assert annotation['num_keypoints'] == int((keypoints[:, 2] > 0).sum())
        assert set(keypoints[:, 2]) <= {0, 1, 2}
        assert np.all(keypoints[keypoints[:, 2] == 0, :2] == 0), 'v=0 must come with x = y = 0'
        shown = keypoints[keypoints[:, 2] > 0]
        assert np.all(
            (shown[:, 0] >= 0) & (shown[:, 0] <= WIDTH - 1) & (shown[:, 1] >= 0) & (shown[:, 1] <= HEIGHT - 1)
        )
        x, y, w, h = annotation['bbox']
        assert x >= 0 and y >= 0 and w > 0 and h > 0 and x + w <= WIDTH and y + h <= HEIGHT
        assert 0 < annotation['area'] <= w * h
        mask = coco.annToMask(annotation)
        assert mask.shape == (HEIGHT, WIDTH)
        if annotation['iscrowd']:
            assert annotation['num_keypoints'] == 0 and isinstance(annotation['segmentation'], dict)
        else:
            assert all(len(polygon) >= 6 and len(polygon) % 2 == 0 for polygon in annotation['segmentation'])


def test_cocoeval_of_ground_truth_as_detections_is_perfect(coco):
    detections = [
        {'image_id': a['image_id'], 'category_id': 1, 'keypoints': a['keypoints'], 'score': 1.0}
        for a in coco.dataset['annotations']
        if not a['iscrowd'] and a['num_keypoints'] > 0
    ]
    results = quiet(coco.loadRes, detections)
    evaluation = COCOeval(coco, results, 'keypoints')
    quiet(evaluation.evaluate)
    quiet(evaluation.accumulate)
    quiet(evaluation.summarize)
    assert evaluation.stats[0] == pytest.approx(1.0)  # AP @ OKS 0.50:0.95


# ------------------------------------------------------------------------------------- visibility
@pytest.fixture(scope='module')
def debug_renders():
    return [
        synthetic.render_image(index, seed=3, width=WIDTH, height=HEIGHT, max_people=6, debug=True)
        for index in range(16)
    ]


def test_masks_are_consistent(debug_renders):
    """Visible mask = own pixels not covered by a person drawn later; area, bbox from it."""
    for _, annotations, debug in debug_renders:
        figures = debug['figures']
        for i, figure in enumerate(figures):
            later = np.zeros_like(figure['own_mask'])
            for other in figures[i + 1 :]:
                later |= other['own_mask']
            np.testing.assert_array_equal(figure['visible_mask'], figure['own_mask'] & ~later)
            assert np.array_equal(figure['own_mask'], figure['part_map'] > 0)
            if figure['annotation_index'] is None:
                assert figure['visible_mask'].sum() < MIN_ANNOTATED_AREA
                continue
            annotation = annotations[figure['annotation_index']]
            visible = figure['visible_mask']
            assert annotation['area'] == int(visible.sum())
            rows, columns = np.nonzero(visible)
            assert annotation['bbox'] == [columns.min(), rows.min(), np.ptp(columns) + 1, np.ptp(rows) + 1]
            # The polygons trace the visible mask: pycocotools rasterises them back to nearly it.
            polygons = mask_utils.decode(
                mask_utils.merge(mask_utils.frPyObjects(annotation['segmentation'], HEIGHT, WIDTH))
            ).astype(bool)
            assert (polygons & visible).sum() / (polygons | visible).sum() > 0.85


def test_visibility_flags_are_honest(debug_renders):
    """v=2: on a part of its own person that the keypoint belongs to, not covered by anyone drawn
    later, on the near side of the head. v=1: covered by a later person, by another of its own
    parts, or on the far side of the head. v=0: outside the image."""
    causes = {'other person': 0, 'own part': 0, 'back of head': 0}
    counts = np.zeros(3, dtype=int)
    for _, annotations, debug in debug_renders:
        for figure in debug['figures']:
            if figure['annotation_index'] is None:
                continue
            keypoints = np.array(annotations[figure['annotation_index']]['keypoints']).reshape(17, 3)
            for k, (x, y, v) in enumerate(keypoints):
                counts[int(v)] += 1
                if v == 0:
                    continue
                row, column = keypoint_pixel(x, y)
                # Every labelled point lies on its own person's drawing...
                assert figure['own_mask'][row, column], (COCO_KEYPOINT_NAMES[k], x, y)
                covered_by_other = not figure['visible_mask'][row, column]
                own_top_part = PART_NAMES[figure['part_map'][row, column] - 1]
                covered_by_own = own_top_part not in KEYPOINT_PARTS[COCO_KEYPOINT_NAMES[k]]
                back_of_head = bool(figure['faces_away'][k])
                if v == 2:
                    assert not (covered_by_other or covered_by_own or back_of_head), (COCO_KEYPOINT_NAMES[k], x, y)
                else:
                    assert covered_by_other or covered_by_own or back_of_head, (COCO_KEYPOINT_NAMES[k], x, y)
                    causes['other person'] += covered_by_other
                    causes['own part'] += covered_by_own and not covered_by_other
                    causes['back of head'] += back_of_head and not (covered_by_other or covered_by_own)
    # All kinds of flags and of occlusion occur, and most labelled points are visible.
    assert all(counts > 0), counts
    assert counts[2] > counts[1], counts
    assert all(value > 0 for value in causes.values()), causes


def test_left_is_anatomical_left():
    """Facing the camera, the left shoulder is on the image right; seen from the back, on the left;
    and from the back the face keypoints are hidden by the head."""
    body = {**BODY_LENGTHS, 'width': 1.0}
    pose = sample_pose(np.random.default_rng(0), families=('stand',))
    pose.update(head_turn=0.0, head_nod=0.0, roll=0.0)
    for yaw, left_on_right in ((0.0, True), (30.0, True), (180.0, False), (-150.0, False)):
        points, axes = skeleton_3d({**pose, 'yaw': yaw}, body)
        for joint in ('shoulder', 'hip', 'eye', 'ear'):
            left, right = points[KP[f'left_{joint}'], 0], points[KP[f'right_{joint}'], 0]
            assert (left > right) == left_on_right, (yaw, joint)
        away = face_points_away(axes['head'])
        assert away[KP['nose']] == (not left_on_right)
    # The standing height: feet down, head up (y grows downwards), about one unit apart.
    points, _ = skeleton_3d({**pose, 'yaw': 0.0}, body)
    assert (
        points[KP['nose'], 1] < points[KP['left_shoulder'], 1] < points[KP['left_hip'], 1] < points[KP['left_ankle'], 1]
    )
    assert 0.8 < points[KP['left_ankle'], 1] - points[KP['nose'], 1] < 1.0


def test_poses_respect_joint_limits():
    rng = np.random.default_rng(1)
    for _ in range(200):
        pose = sample_pose(rng)
        for name, (low, high) in JOINT_LIMITS.items():
            for key in (name, f'left_{name}', f'right_{name}'):
                if key in pose:
                    assert low <= pose[key] <= high, (key, pose[key])


# ------------------------------------------------------------------------------------ determinism
def test_same_seed_same_bytes_different_seed_differs(tmp_path):
    def generate(folder, seed, workers=1):
        path = synthetic.generate_dataset(tmp_path / folder, 5, seed=seed, width=WIDTH, height=HEIGHT, workers=workers)
        return {p.relative_to(path.parent): p.read_bytes() for p in path.parent.rglob('*') if p.is_file()}

    # The second run renders in two processes: the bytes do not depend on that either.
    first, second, other = generate('a', 11), generate('b', 11, workers=2), generate('c', 12)
    assert first.keys() == second.keys() and len(first) == 6
    assert all(first[name] == second[name] for name in first)
    assert all(first[name] != other[name] for name in first)


def test_images_do_not_depend_on_order():
    """Image i depends on (seed, i) only: rendering in another order (or process) gives the same."""
    forward = [synthetic.render_image(index, seed=5, width=WIDTH, height=HEIGHT) for index in range(3)]
    for index in (2, 0, 1):
        image, annotations = synthetic.render_image(index, seed=5, width=WIDTH, height=HEIGHT)
        np.testing.assert_array_equal(image, forward[index][0])
        assert annotations == forward[index][1]


def test_scene_options_keep_people_inside_and_small_enough():
    """people_inside: no annotated person is cut by the border (bbox inside, no keypoint flagged outside);
    max_person_height caps the standing height. The default scene does cut people on the same seeds."""
    options = dict(width=WIDTH, height=HEIGHT, max_people=3, crowd_probability=0.0)
    cut_by_default = 0
    for index in range(12):
        _, default_annotations = synthetic.render_image(index, seed=9, **options)
        cut_by_default += sum(0 in a['keypoints'][2::3] for a in default_annotations)
        _, annotations = synthetic.render_image(
            index, seed=9, people_inside=True, max_person_height=0.8, clutter_shapes=(0, 2), **options
        )
        assert annotations
        for annotation in annotations:
            x, y, w, h = annotation['bbox']
            assert x >= 0 and y >= 0 and x + w <= WIDTH and y + h <= HEIGHT
            assert h <= 0.8 * HEIGHT * 1.2  # standing height plus head and limb margins
            assert 0 not in annotation['keypoints'][2::3], 'a keypoint flagged outside the image'
    assert cut_by_default > 0, 'the default scene should cut some people (else this test proves nothing)'


# ----------------------------------------------------------------------------------------- crowds
def test_crowd_regions(coco):
    crowds = [a for a in coco.dataset['annotations'] if a['iscrowd']]
    assert crowds, 'expected a crowd region in a set of this size'
    for crowd in crowds:
        mask = coco.annToMask(crowd)
        assert int(mask.sum()) == crowd['area'] > 0
        assert crowd['keypoints'] == [0] * 51
    # The RLE round-trips exactly, and the crowd of a debug render is the decoded one.
    for index in range(NUM_IMAGES):
        image, annotations, debug = synthetic.render_image(
            index, seed=7, width=WIDTH, height=HEIGHT, max_people=5, debug=True
        )
        crowd = [a for a in annotations if a['iscrowd']]
        if crowd:
            rle = mask_utils.frPyObjects(crowd[0]['segmentation'], HEIGHT, WIDTH)
            np.testing.assert_array_equal(mask_utils.decode(rle).astype(bool), debug['crowd_mask'])
            return
    pytest.fail('no crowd in the debug renders')


def test_rle_encode_round_trip():
    rng = np.random.default_rng(0)
    for first_pixel in (0, 1):
        mask = rng.random((7, 5)) < 0.4
        mask[0, 0] = first_pixel
        rle = rle_encode(mask)
        decoded = mask_utils.decode(mask_utils.frPyObjects(rle, 7, 5)).astype(bool)
        np.testing.assert_array_equal(decoded, mask)


# -------------------------------------------------------------------------------- training labels
def test_training_label_selection_accepts_it(dataset):
    coco_json = json.loads(dataset[1].read_text())
    labels = prepare_annotations(coco_json, source=str(dataset[1]))
    assert len(labels) >= NUM_IMAGES // 3
    for label in labels:
        assert label['num_keypoints'] >= 5 and label['segment_area'] >= 32 * 32
        assert (dataset[0] / 'images' / label['img_paths']).is_file()
        mask = crowd_mask(label['segmentations'], label['img_height'], label['img_width'])
        assert mask.shape == (HEIGHT, WIDTH)
    assert any(label['segmentations'] for label in labels), 'some label should carry a crowd region'


def test_command_line(tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            '-m',
            'lwop_jax',
            'synthetic',
            '--out',
            str(tmp_path),
            '--num-images',
            '2',
            '--seed',
            '1',
            '--width',
            '160',
            '--height',
            '120',
            '--max-people',
            '2',
            '--people-inside',
            '--max-person-height',
            '0.9',
            '--clutter-shapes',
            '0',
            '2',
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    path = tmp_path / 'annotations.json'
    assert str(path) in result.stdout
    coco_json = json.loads(path.read_text())
    assert [image['file_name'] for image in coco_json['images']] == ['000000000001.jpg', '000000000002.jpg']
    assert sorted(p.name for p in (tmp_path / 'images').iterdir()) == ['000000000001.jpg', '000000000002.jpg']
    assert all(0 not in a['keypoints'][2::3] for a in coco_json['annotations'] if not a['iscrowd'])


def test_bad_scene_options_are_refused(tmp_path):
    with pytest.raises(ValueError, match='clutter_shapes'):
        synthetic.generate_dataset(tmp_path, 1, clutter_shapes=(5, 2))
    with pytest.raises(ValueError, match='min_person_height'):
        synthetic.generate_dataset(tmp_path, 1, height=100, min_person_height=200, max_person_height=0.9)


def test_no_jax_or_tensorflow_import():
    code = (
        'import sys, lwop_jax.synthetic; '
        'bad = [m for m in sys.modules if m.split(".")[0] in ("jax", "tensorflow", "flax", "torch")]; '
        'assert not bad, bad'
    )
    subprocess.run([sys.executable, '-c', code], check=True)
