"""Synthetic data in other dataset skeletons: the same images and body points under other names, order and
category; honest flags of the points COCO lacks; the shipped 'figure' skeleton trains with its schema."""

import contextlib
import io
import json
import math

import numpy as np
import pytest

from lwop_jax import synthetic
from lwop_jax.cli import synthetic as synthetic_cli
from lwop_jax.data import coco, pipeline, samples
from lwop_jax.errors import InputFileError
from lwop_jax.schema import SchemaError, load_schema
from lwop_jax.skeleton import COCO_KEYPOINT_NAMES, COCO_SKELETON
from lwop_jax.synthetic.annotations import CATEGORY
from lwop_jax.synthetic.body import EXTRA_POINTS, PART_NAMES, POINT_INDEX
from lwop_jax.synthetic.dataset_skeleton import (
    BODY_POINT_PARTS,
    BODY_POINTS,
    COCO17,
    DatasetSkeleton,
    SkeletonError,
    load_skeleton,
    shipped_skeletons,
)

WIDTH, HEIGHT = 240, 180
FIGURE_KEYPOINTS = [
    'head', 'neck', 'shoulder_r', 'elbow_r', 'hand_r', 'shoulder_l', 'elbow_l', 'hand_l',
    'hip_r', 'knee_r', 'ankle_r', 'toe_r', 'hip_l', 'knee_l', 'ankle_l', 'toe_l',
]  # fmt: skip


def files_of(path):
    return {p.relative_to(path.parent): p.read_bytes() for p in sorted(path.parent.rglob('*')) if p.is_file()}


@pytest.fixture(scope='module')
def two_sets(tmp_path_factory):
    """(COCO path, figure path): the same seed and scene with the default skeleton and with 'figure'."""
    folder = tmp_path_factory.mktemp('skeletons')
    options = dict(seed=5, width=WIDTH, height=HEIGHT, max_people=4, crowd_probability=0.5)
    default = synthetic.generate_dataset(folder / 'coco', 6, **options)
    figure = synthetic.generate_dataset(folder / 'figure', 6, skeleton='figure', **options)
    return default, figure


# ----------------------------------------------------------------------------------- the skeletons
def test_shipped_skeletons_and_the_default():
    assert shipped_skeletons()[:1] == ('coco17',) and 'figure' in shipped_skeletons()
    assert load_skeleton() is load_skeleton('coco17') is COCO17
    assert COCO17.category == CATEGORY
    assert COCO17.category == {
        'id': 1,
        'name': 'person',
        'supercategory': 'person',
        'keypoints': list(COCO_KEYPOINT_NAMES),
        'skeleton': [list(pair) for pair in COCO_SKELETON],
    }
    figure = load_skeleton('figure')
    assert list(figure.keypoints) == FIGURE_KEYPOINTS
    assert not set(figure.keypoints) & set(COCO_KEYPOINT_NAMES), 'the example should be clearly non-COCO'
    assert {'head_center', 'shoulder_center', 'left_hand_tip', 'right_toe'} <= set(figure.points)
    assert set(BODY_POINT_PARTS) == set(BODY_POINTS) == set(COCO_KEYPOINT_NAMES) | set(EXTRA_POINTS)


def test_a_skeleton_file_with_body_point_names_and_index_pairs(tmp_path):
    path = tmp_path / 'mine.json'
    content = {'name': 'doll', 'keypoints': ['nose', ['tip', 'left_hand_tip'], 'hip_center'], 'skeleton': [[1, 3]]}
    path.write_text(json.dumps(content))
    skeleton = load_skeleton(path)
    assert skeleton == DatasetSkeleton('doll', ('nose', 'tip', 'hip_center'), ('nose', 'left_hand_tip', 'hip_center'),
                                       ((1, 3),))  # fmt: skip
    assert skeleton.category['skeleton'] == [[1, 3]] and skeleton.category['supercategory'] == 'person'
    assert load_skeleton(str(path)) == skeleton == load_skeleton(skeleton)


# ----------------------------------------------------------------------------- same images, points
def test_same_seed_same_images_and_shared_points(two_sets):
    default_path, figure_path = two_sets
    default_files, figure_files = files_of(default_path), files_of(figure_path)
    assert default_files.keys() == figure_files.keys() and len(default_files) == 7
    for name in default_files:
        if name.suffix == '.jpg':
            assert default_files[name] == figure_files[name], name
    default, figure = (json.loads(path.read_text()) for path in (default_path, figure_path))
    assert default['categories'] == [CATEGORY]
    assert figure['categories'] == [load_skeleton('figure').category]
    assert figure['categories'][0]['name'] == 'figure'
    assert figure['categories'][0]['keypoints'] == FIGURE_KEYPOINTS
    assert default['images'] == figure['images'] and default['info'] == figure['info']
    assert len(default['annotations']) == len(figure['annotations']) > 6
    points = load_skeleton('figure').points
    shared = [(k, COCO_KEYPOINT_NAMES.index(point)) for k, point in enumerate(points) if point in COCO_KEYPOINT_NAMES]
    assert len(shared) == 10
    crowds = 0
    for a, b in zip(default['annotations'], figure['annotations']):
        assert {key: a[key] for key in a if 'keypoints' not in key} == {
            key: b[key] for key in b if 'keypoints' not in key
        }
        coco_points, figure_points = np.reshape(a['keypoints'], (17, 3)), np.reshape(b['keypoints'], (16, 3))
        assert b['num_keypoints'] == int((figure_points[:, 2] > 0).sum())
        if a['iscrowd']:
            crowds += 1
            assert b['keypoints'] == [0] * 48 and b['num_keypoints'] == 0
        for k, c in shared:
            assert figure_points[k].tolist() == coco_points[c].tolist()
    assert crowds, 'expected a crowd region in these images'


def test_workers_do_not_change_the_bytes(two_sets, tmp_path):
    _, figure_path = two_sets
    again = synthetic.generate_dataset(
        tmp_path, 6, seed=5, width=WIDTH, height=HEIGHT, max_people=4, crowd_probability=0.5,
        skeleton=load_skeleton('figure'), workers=2,
    )  # fmt: skip
    assert files_of(again) == files_of(figure_path)


# -------------------------------------------------------------------------------------- the flags
def keypoint_pixel(x, y):
    return int(math.floor(y + 0.5)), int(math.floor(x + 0.5))


def test_flags_of_every_body_point_follow_the_masks():
    """A skeleton of all 24 body points: each is at its body point's position, v=0 (x = y = 0) outside the
    image, else v=2 exactly when its own person's top part at its pixel is one it belongs to, no later
    person covers it and (a face point) it is on the near side of the head. The points COCO lacks get
    both in-image flags, and the hand tips and toes are often outside."""
    everything = DatasetSkeleton('everything', BODY_POINTS, BODY_POINTS)
    counts = {point: np.zeros(3, dtype=int) for point in BODY_POINTS}
    for index in range(12):
        _, annotations, debug = synthetic.render_image(
            index, seed=4, width=WIDTH, height=HEIGHT, max_people=6, debug=True, skeleton=everything
        )
        for figure in debug['figures']:
            if figure['annotation_index'] is None:
                continue
            keypoints = np.reshape(annotations[figure['annotation_index']]['keypoints'], (-1, 3))
            for point, (x, y, v) in zip(BODY_POINTS, keypoints.tolist()):
                counts[point][int(v)] += 1
                px, py = np.round(figure['points'][POINT_INDEX[point]], 2).tolist()
                if not (0 <= px <= WIDTH - 1 and 0 <= py <= HEIGHT - 1):
                    assert (x, y, v) == (0, 0, 0), point
                    continue
                assert (x, y) == (px, py) and v in (1, 2), point
                row, column = keypoint_pixel(x, y)
                part = figure['part_map'][row, column]
                on_own_part = part > 0 and PART_NAMES[part - 1] in BODY_POINT_PARTS[point]
                faces_away = point in COCO_KEYPOINT_NAMES and figure['faces_away'][COCO_KEYPOINT_NAMES.index(point)]
                assert (v == 2) == bool(figure['visible_mask'][row, column] and on_own_part and not faces_away), point
    for point in EXTRA_POINTS:
        assert counts[point][2] > 0 and counts[point][1] > 0, (point, counts[point])
    assert all(counts[point][0] > 0 for point in ('left_toe', 'right_toe', 'left_hand_tip', 'right_hand_tip'))


# --------------------------------------------------------------------------------------- training
def test_training_samples_in_the_figure_schema(two_sets):
    figure_path = two_sets[1]
    images = figure_path.parent / 'images'
    schema = load_schema('figure')
    assert (schema.num_keypoints, schema.num_heatmaps, schema.num_pafs) == (17, 18, 32)
    assert schema.keypoints[schema.derived_keypoints[0]] == 'pelvis'
    training_set = coco.load_training_set(figure_path, images, schema=schema)
    assert len(training_set.labels) >= 4
    layout = training_set.layout
    assert layout.num_dataset_keypoints == 16 and len(layout.used_dataset_keypoints) == 16
    # The derived pelvis is the midpoint of the hips.
    label = training_set.labels[0]
    converted = coco.convert_keypoints(label['keypoints'], label['img_width'], label['img_height'], layout)
    hips = np.reshape(label['keypoints'], (16, 3))[[FIGURE_KEYPOINTS.index('hip_l'), FIGURE_KEYPOINTS.index('hip_r')]]
    np.testing.assert_allclose(converted[schema.keypoints.index('pelvis'), :2], hips[:, :2].mean(axis=0))

    config = samples.SampleConfig(crop_size=184, schema=schema, layout=layout)
    source = samples.LabelFileSource(training_set.labels, images)
    peaks = np.zeros(schema.num_keypoints)
    for index in range(len(training_set.labels)):
        image, heatmaps, pafs, mask = samples.process_sample(
            source.load(index), pipeline.sample_rng(3, 0, index), config
        )
        assert image.shape == (184, 184, 3) and mask.shape == (23, 23)
        assert heatmaps.shape == (23, 23, 18) and pafs.shape == (23, 23, 32)
        peaks = np.maximum(peaks, heatmaps[..., :17].max(axis=(0, 1)))
    assert np.all(peaks > 0.5), dict(zip(schema.keypoints, peaks.round(2)))  # hands, toes, pelvis included
    # COCO's schemas read COCO's names, which this category lacks.
    with pytest.raises(SchemaError, match=r"lack 'nose'"):
        coco.load_training_set(figure_path, images, schema=load_schema('coco17'))


# ----------------------------------------------------------------------------------- bad skeletons
GOOD = {'name': 'doll', 'keypoints': [['head', 'head_center'], ['toe', 'left_toe']]}
BAD_SKELETONS = [
    ({**GOOD, 'keypoints': [['head', 'head_centre']]}, "keypoints[0]: 'head_centre' is not a body point"),
    ({**GOOD, 'keypoints': [['a', 'nose'], ['a', 'left_eye']]}, "keypoints[1]: 'a' is listed twice"),
    ({**GOOD, 'keypoints': [['a', 'nose'], ['b', 'nose']]}, "keypoints[1]: 'b' takes body point 'nose'"),
    ({**GOOD, 'keypoints': [['a', 'nose', 'x']]}, 'keypoints[0]: must be [dataset name, body point]'),
    ({**GOOD, 'keypoints': []}, 'keypoints: must be a non-empty list'),
    ({'keypoints': ['nose']}, 'name: missing'),
    ({**GOOD, 'name': ''}, 'name: must be a non-empty string'),
    ({**GOOD, 'colour': 'red'}, 'colour: not a dataset skeleton field'),
    ({**GOOD, 'skeleton': [['head', 'foot']]}, "skeleton[0]: 'foot' is not one of the keypoints"),
    ({**GOOD, 'skeleton': [[1, 3]]}, 'skeleton[0]: 3 is not one of the keypoints (a name, or 1..2)'),
    ({**GOOD, 'skeleton': [[1, 1]]}, "skeleton[0]: joins 'head' to itself"),
    ({**GOOD, 'skeleton': [[1, 2], ['toe', 'head']]}, "skeleton[1]: ['toe', 'head'] is listed twice"),
    ({**GOOD, 'skeleton': [[1, 2, 2]]}, 'skeleton[0]: must be a pair'),
    ([GOOD], 'a dataset skeleton is a JSON object, not list'),
]


@pytest.mark.parametrize(('content', 'problem'), BAD_SKELETONS, ids=[p.split(':')[0] for _, p in BAD_SKELETONS])
def test_bad_skeleton_files_are_one_line(tmp_path, content, problem):
    path = tmp_path / 'bad.json'
    path.write_text(json.dumps(content))
    with pytest.raises(SkeletonError) as error:
        load_skeleton(path)
    message = str(error.value)
    assert isinstance(error.value, InputFileError) and '\n' not in message
    assert message.startswith(f'{path}: {problem}'), message


def test_unreadable_and_unknown_skeletons(tmp_path):
    (tmp_path / 'broken.json').write_text('{"name": ')
    with pytest.raises(SkeletonError, match=r'broken\.json: not valid JSON'):
        load_skeleton(tmp_path / 'broken.json')
    with pytest.raises(SkeletonError, match=r'absent\.json: cannot read the dataset skeleton'):
        load_skeleton(tmp_path / 'absent.json')
    with pytest.raises(SkeletonError, match=r'^coco18: no such dataset skeleton \(shipped: coco17, figure'):
        load_skeleton('coco18')
    # generate_dataset refuses it before writing anything.
    with pytest.raises(SkeletonError):
        synthetic.generate_dataset(tmp_path / 'out', 1, skeleton='coco18')
    assert not (tmp_path / 'out').exists()


def run_cli(argv):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = synthetic_cli.main(argv)
    return status, out.getvalue(), err.getvalue()


def test_command_line_skeleton_option(tmp_path):
    options = ['--num-images', '1', '--width', '96', '--height', '72', '--max-people', '2']
    status, out, _ = run_cli(['--out', str(tmp_path / 'ok'), *options, '--skeleton', 'figure'])
    assert status == 0 and out.strip() == str(tmp_path / 'ok' / 'annotations.json')
    category = json.loads((tmp_path / 'ok' / 'annotations.json').read_text())['categories'][0]
    assert category['name'] == 'figure' and category['keypoints'] == FIGURE_KEYPOINTS
    bad = tmp_path / 'bad.json'
    bad.write_text(json.dumps({**GOOD, 'keypoints': [['hand', 'left_hand'], ['toe', 'left_toe']]}))
    status, _, err = run_cli(['--out', str(tmp_path / 'bad'), *options, '--skeleton', str(bad)])
    assert status == 1
    problem = f"keypoints[0]: 'left_hand' is not a body point (body points: {', '.join(BODY_POINTS)})"
    assert err == f'error: {bad}: {problem}\n'
