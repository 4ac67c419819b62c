"""COCO label selection (prepare_annotations), ConvertKeypoints and crowd masks vs the original."""

import copy
import json

import numpy as np
import pytest

from lwop_jax.data.coco import convert_keypoints, label_keypoints, load_coco_json, prepare_annotations
from lwop_jax.data.crowd_mask import crowd_mask
from lwop_jax.data.targets import downsample_mask

NUM_SAMPLES = 20
NUM_COCO_MINI_LABELS = 12  # s000..s011
MINI_JSON = 'person_keypoints_val2017_mini.json'
LABEL_KEYS = [
    'img_paths',
    'img_width',
    'img_height',
    'objpos',
    'image_id',
    'bbox',
    'segment_area',
    'scale_provided',
    'num_keypoints',
    'segmentations',
    'keypoints',
    'processed_other_annotations',
]
OTHER_KEYS = ['objpos', 'bbox', 'segment_area', 'scale_provided', 'num_keypoints', 'keypoints']


@pytest.fixture(scope='module')
def targets(reference_dir):
    return np.load(reference_dir / 'targets_reference.npz')


@pytest.fixture(scope='module')
def mini_labels(coco_mini_dir):
    return prepare_annotations(load_coco_json(coco_mini_dir / MINI_JSON))


def meta(targets, index):
    return json.loads(str(targets[f's{index:03d}_meta']))


# ---------------------------------------------------------------------------- ConvertKeypoints
@pytest.mark.parametrize('index', range(NUM_SAMPLES))
def test_convert_keypoints_matches_original(targets, index):
    prefix = f's{index:03d}_'
    height, width = (int(v) for v in targets[prefix + 'image_hw'])
    main = convert_keypoints(targets[prefix + 'main_keypoints_prepared'], width, height)
    others = convert_keypoints(targets[prefix + 'other_keypoints_prepared'], width, height)
    assert main.shape == (18, 3) and others.shape == targets[prefix + 'other_keypoints'].shape
    assert np.array_equal(main, targets[prefix + 'main_keypoints'])
    assert np.array_equal(others, targets[prefix + 'other_keypoints'])


def test_convert_keypoints_flag_rules_t4():
    coco = np.zeros((17, 3))
    coco[:, :2] = 50.0
    coco[:, 2] = 1
    coco[0] = (0.0, 0.0, 1)  # (0, 0) means missing
    coco[1] = (100.0, 20.0, 1)  # x == W: outside
    coco[2] = (20.0, 80.0, 1)  # y == H: outside
    coco[3] = (99.99, 79.99, 0)  # inside, keeps its flag 0
    coco[5] = (10.0, 10.0, 0)  # left shoulder occluded, right visible -> neck flag 0
    coco[6] = (30.0, 20.0, 1)
    internal = convert_keypoints(coco, 100, 80)
    assert internal[0, 2] == 2  # nose
    assert internal[15, 2] == 2 and internal[14, 2] == 2  # l_eye (coco 1), r_eye (coco 2)
    assert internal[17, 2] == 0  # l_ear (coco 3)
    assert tuple(internal[1]) == (20.0, 15.0, 0)  # neck = shoulder midpoint, flag 0
    coco[6, 2] = 0
    coco[5, 2] = 1
    coco[6] = (30.0, 20.0, 1)
    assert convert_keypoints(coco, 100, 80)[1, 2] == 1  # both visible
    coco[6] = (-30.0, 20.0, 1)  # shoulder outside -> neck flag 2
    assert convert_keypoints(coco, 100, 80)[1, 2] == 2


def test_convert_keypoints_batched_equals_single(targets):
    prepared = targets['s007_other_keypoints_prepared']
    batched = convert_keypoints(prepared, 640, 392)
    assert np.array_equal(batched, np.stack([convert_keypoints(p, 640, 392) for p in prepared]))
    with pytest.raises(ValueError):
        convert_keypoints(np.zeros((18, 3)), 640, 392)


# ------------------------------------------------------------------------- prepare_annotations
def test_prepare_annotations_gives_the_twelve_main_persons(targets, mini_labels):
    assert len(mini_labels) == NUM_COCO_MINI_LABELS
    for index, label in enumerate(mini_labels):
        expected = meta(targets, index)
        assert list(label) == LABEL_KEYS
        for key in (
            'image_id',
            'img_paths',
            'img_width',
            'img_height',
            'bbox',
            'objpos',
            'scale_provided',
            'segment_area',
            'num_keypoints',
        ):
            assert label[key] == expected[key], (index, key)
        assert len(label['processed_other_annotations']) == expected['num_others']
        assert len(label['segmentations']) == expected['num_crowd_segmentations']
        assert all(list(other) == OTHER_KEYS for other in label['processed_other_annotations'])


def test_prepare_annotations_keypoints_match(targets, mini_labels):
    for index, label in enumerate(mini_labels):
        persons = label_keypoints(label)
        prefix = f's{index:03d}_'
        assert np.array_equal(persons[0], targets[prefix + 'main_keypoints_prepared'])
        assert np.array_equal(persons[1:], targets[prefix + 'other_keypoints_prepared'].reshape(-1, 17, 3))


def test_prepare_annotations_then_convert_reproduces_internal_keypoints(targets, mini_labels):
    for index, label in enumerate(mini_labels):
        internal = convert_keypoints(label_keypoints(label), label['img_width'], label['img_height'])
        prefix = f's{index:03d}_'
        assert np.array_equal(internal[0], targets[prefix + 'main_keypoints'])
        assert np.array_equal(internal[1:], targets[prefix + 'other_keypoints'])


def _person(ann_id, image_id, bbox, num_keypoints=17, area=None, visibility=2):
    keypoints = []
    for k in range(17):
        keypoints += [bbox[0] + k, bbox[1] + k, visibility if k < num_keypoints else 0]
    return {
        'id': ann_id,
        'image_id': image_id,
        'iscrowd': 0,
        'bbox': bbox,
        'area': bbox[2] * bbox[3] if area is None else area,
        'num_keypoints': num_keypoints,
        'keypoints': keypoints,
        'category_id': 1,
    }


def _synthetic_coco():
    images = [
        {'id': 7, 'file_name': 'a.jpg', 'width': 400, 'height': 300},
        {'id': 8, 'file_name': 'b.jpg', 'width': 200, 'height': 100},
        {'id': 9, 'file_name': 'crowd_only.jpg', 'width': 50, 'height': 50},
    ]
    crowd = {
        'id': 100,
        'image_id': 8,
        'iscrowd': 1,
        'bbox': [0, 0, 5, 5],
        'area': 25,
        'num_keypoints': 0,
        'keypoints': [0] * 51,
        'segmentation': {'size': [100, 200], 'counts': [0, 5, 19995]},
    }
    annotations = [
        _person(1, 8, [10, 10, 100, 80]),  # b.jpg appears first -> labels first
        _person(2, 7, [100, 100, 100, 200]),  # main, centre (150, 200)
        _person(3, 7, [115, 100, 100, 200]),  # centre 15 px away < 0.3 * 100: rejected
        _person(4, 7, [130, 100, 100, 200]),  # 30 px == 0.3 * 100: not closer, kept
        _person(5, 7, [300, 10, 40, 40], num_keypoints=4),  # < 5 keypoints: other only
        _person(6, 7, [300, 100, 30, 30]),  # area 900 < 1024: other only
        _person(10, 7, [0, 0, 50, 50], num_keypoints=0),  # no keypoints: ignored entirely
        crowd,
        dict(crowd, id=101, image_id=9),
    ]
    return {'images': images, 'annotations': annotations, 'categories': [{'id': 1, 'name': 'person'}]}


def test_prepare_annotations_selection_rules():
    labels = prepare_annotations(_synthetic_coco(), net_input_size=368)
    assert [(label['image_id'], label['bbox'][0]) for label in labels] == [(8, 10), (7, 100), (7, 130)]
    image_b, first, second = labels
    assert image_b['segmentations'] == [_synthetic_coco()['annotations'][7]['segmentation']]
    assert first['segmentations'] == []
    assert [o['bbox'][0] for o in first['processed_other_annotations']] == [115, 130, 300, 300]
    assert [o['bbox'][0] for o in second['processed_other_annotations']] == [100, 115, 300, 300]
    assert first['objpos'] == [150.0, 200.0]
    assert first['scale_provided'] == 200 / 368
    assert first['img_paths'] == 'a.jpg' and (first['img_width'], first['img_height']) == (400, 300)
    flags = [kp[2] for kp in labels[1]['processed_other_annotations'][2]['keypoints']]
    assert flags == [1] * 4 + [2] * 13  # COCO v=2 -> 1, v=0 -> 2


def test_prepare_annotations_visibility_mapping():
    coco = _synthetic_coco()
    coco['annotations'] = [_person(1, 7, [10, 10, 100, 80], visibility=1)]
    coco['annotations'][0]['keypoints'][2] = 2
    coco['annotations'][0]['keypoints'][5] = 0
    keypoints = prepare_annotations(coco)[0]['keypoints']
    assert [kp[2] for kp in keypoints[:3]] == [1, 2, 0]  # v=2 -> 1, v=0 -> 2, v=1 -> 0
    assert keypoints[0][:2] == [10, 10]


@pytest.mark.parametrize(
    'broken, message',
    [
        (lambda c: c.pop('annotations'), "'annotations'"),
        (lambda c: c.pop('images'), "'images'"),
        (lambda c: [a.pop('keypoints') for a in c['annotations'] if not a['iscrowd']], 'person keypoints'),
        (lambda c: c['images'].pop(1), 'image id 8'),
    ],
)
def test_prepare_annotations_errors_name_the_problem(broken, message):
    coco = copy.deepcopy(_synthetic_coco())
    broken(coco)
    with pytest.raises(ValueError) as error:
        prepare_annotations(coco, source='instances_val.json')
    assert 'instances_val.json' in str(error.value) and message in str(error.value)


def test_prepare_annotations_rejects_non_dict():
    with pytest.raises(ValueError, match="'annotations'"):
        prepare_annotations([1, 2, 3])


def test_load_coco_json_errors(tmp_path):
    broken = tmp_path / 'broken.json'
    broken.write_text('{"images": [')
    with pytest.raises(ValueError, match='broken.json'):
        load_coco_json(broken)
    listing = tmp_path / 'list.json'
    listing.write_text('[]')
    with pytest.raises(ValueError, match='list.json'):
        load_coco_json(listing)


# ------------------------------------------------------------------------------ crowd masks
def _uncompressed_rle(region):
    """(H, W) bool -> COCO iscrowd-style uncompressed RLE (column-major runs, zeros first)."""
    flat = region.flatten(order='F').astype(np.int8)
    changes = np.flatnonzero(np.diff(flat)) + 1
    bounds = np.concatenate([[0], changes, [flat.size]])
    counts = np.diff(bounds).tolist()
    if flat[0]:
        counts = [0] + counts
    return {'size': list(region.shape), 'counts': counts}


def _s019_crowd_regions(targets):
    """The two crowd regions of s019, recovered from its full mask (the npz does not store the
    segmentations themselves): a rectangle and an ellipse, disjoint, so split by connectivity."""
    cv2 = pytest.importorskip('cv2')
    crowd = targets['s019_mask_full'] == 0
    count, components = cv2.connectedComponents(crowd.astype(np.uint8))
    assert count == 3 and meta(targets, 19)['num_crowd_segmentations'] == 2
    return [components == k for k in (1, 2)]


def test_crowd_mask_reproduces_s019_from_uncompressed_rle(targets):
    height, width = (int(v) for v in targets['s019_image_hw'])
    segmentations = [_uncompressed_rle(region) for region in _s019_crowd_regions(targets)]
    mask = crowd_mask(segmentations, height, width)
    assert mask.dtype == np.float32 and np.array_equal(mask, targets['s019_mask_full'])
    assert np.array_equal(downsample_mask(mask), targets['s019_mask'])


def test_crowd_mask_accepts_compressed_rle(targets):
    mask_utils = pytest.importorskip('pycocotools.mask')
    height, width = (int(v) for v in targets['s019_image_hw'])
    regions = _s019_crowd_regions(targets)
    compressed = [mask_utils.encode(np.asfortranarray(r.astype(np.uint8))) for r in regions]
    as_text = [dict(rle, counts=rle['counts'].decode()) for rle in compressed]  # as in a JSON file
    assert np.array_equal(crowd_mask(compressed, height, width), targets['s019_mask_full'])
    assert np.array_equal(crowd_mask(as_text, height, width), targets['s019_mask_full'])


def test_crowd_mask_accepts_polygons():
    pytest.importorskip('pycocotools')
    left = [10.0, 10.0, 30.0, 10.0, 30.0, 20.0, 10.0, 20.0]
    right = [50.0, 5.0, 70.0, 5.0, 60.0, 25.0]
    mask = crowd_mask([[left, right]], 40, 80)  # one crowd annotation made of two polygons
    assert mask.dtype == np.float32 and set(np.unique(mask)) == {0.0, 1.0}
    assert mask[15, 20] == 0 and mask[12, 60] == 0 and mask[35, 40] == 1
    assert 200 <= np.count_nonzero(mask[:, :40] == 0) <= 260  # about 20 x 10 (+ pycocotools edges)


def test_crowd_mask_edge_cases():
    assert np.array_equal(crowd_mask([], 4, 5), np.ones((4, 5), np.float32))
    with pytest.raises(ValueError, match='does not match'):
        crowd_mask([{'size': [3, 5], 'counts': [0, 15]}], 4, 5)
