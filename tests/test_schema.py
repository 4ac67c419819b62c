"""Keypoint schemas: the shipped coco18 gives exactly the original's tables, coco17 and custom files load,
and every problem in a schema file is one line naming the file and the field."""

import json

import numpy as np
import pytest

from lwop_jax import skeleton
from lwop_jax.schema import KeypointSchema, SchemaError, load_schema, schema_from_json


def test_coco18_gives_exactly_the_original_tables():
    schema = load_schema('coco18')
    assert schema == load_schema()  # the default
    assert schema.keypoints == skeleton.KEYPOINT_NAMES
    assert (schema.num_keypoints, schema.num_heatmaps, schema.num_pafs) == (18, 19, 38)
    assert schema.limbs == skeleton.BODY_PARTS_KPT_IDS
    assert schema.paf_channels == skeleton.BODY_PARTS_PAF_IDS
    assert schema.completing == (False,) * 17 + (True, True)
    assert schema.training_limbs == skeleton.PAF_LIMBS
    assert schema.flip_pairs == skeleton.FLIP_PAIRS
    assert schema.flip_permutation == skeleton.FLIP_KEYPOINTS
    assert schema.drawn_limbs == skeleton.DRAW_LIMBS
    assert set(schema.colors) == {skeleton.POSE_COLOR}
    assert schema.oks_sigmas.dtype == skeleton.POSE_SIGMAS.dtype
    np.testing.assert_array_equal(schema.oks_sigmas, skeleton.POSE_SIGMAS)
    np.testing.assert_array_equal(schema.oks_vars, skeleton.POSE_VARS)
    layout = schema.dataset_layout(skeleton.COCO_KEYPOINT_NAMES, 'coco.json')
    assert layout.direct == skeleton.INTERNAL_TO_COCO
    left, right = (
        skeleton.COCO_KEYPOINT_NAMES.index('left_shoulder'),
        skeleton.COCO_KEYPOINT_NAMES.index('right_shoulder'),
    )
    assert layout.derived == ((1, left, right),)
    assert layout.used_dataset_keypoints == tuple(range(17))


def test_coco17_is_cocos_own_order_with_a_grouping_tree():
    schema = load_schema('coco17')
    assert schema.keypoints == skeleton.COCO_KEYPOINT_NAMES
    assert (schema.num_heatmaps, schema.num_pafs) == (18, 36)
    layout = schema.dataset_layout(skeleton.COCO_KEYPOINT_NAMES, 'coco.json')
    assert layout.direct == tuple(range(17)) and layout.derived == ()
    mirrored = [schema.keypoints[k] for k in schema.flip_permutation]
    assert mirrored[schema.keypoints.index('left_wrist')] == 'right_wrist' and mirrored[0] == 'nose'
    assert len(schema.limbs) == 18 and schema.drawn_limbs == schema.limbs[:16]


@pytest.mark.parametrize('name', ['coco18', 'coco17'])
def test_a_schema_written_out_loads_back_equal(name, tmp_path):
    schema = load_schema(name)
    path = tmp_path / 'mine.json'
    path.write_text(json.dumps(schema.to_json()))
    assert load_schema(path) == schema
    assert isinstance(hash(schema), int)


def figure(**changes) -> dict:
    """A small valid non-COCO schema: 6 points, a tree from the pelvis, one completing limb."""
    content = {
        'name': 'figure6',
        'keypoints': ['pelvis', 'head', 'hand_l', 'hand_r', 'foot_l', 'foot_r'],
        'derived': {'pelvis': ['hip_l', 'hip_r']},
        'source': {'head': 'top'},
        'limbs': [['pelvis', 'head'], ['head', 'hand_l'], ['head', 'hand_r'], ['pelvis', 'foot_l'],
                  ['pelvis', 'foot_r'], ['hand_l', 'foot_l']],
        'completing_limbs': [['hand_l', 'foot_l']],
        'flip_pairs': [['hand_l', 'hand_r'], ['foot_l', 'foot_r']],
        'sigmas': {'pelvis': 0.1, 'head': 0.05, 'hand_l': 0.06, 'hand_r': 0.06, 'foot_l': 0.09, 'foot_r': 0.09},
        'colors': {'default': [255, 0, 0], 'head': [0, 0, 255]},
    }  # fmt: skip
    content.update(changes)
    return content


def test_a_custom_schema_has_its_own_sizes_and_dataset_layout():
    schema = schema_from_json(figure(), 'figure6.json')
    assert isinstance(schema, KeypointSchema)
    assert (schema.num_heatmaps, schema.num_pafs) == (7, 12)
    assert schema.paf_channels == tuple((2 * i, 2 * i + 1) for i in range(6))
    assert schema.completing == (False,) * 5 + (True,)
    assert schema.colors[1] == (0, 0, 255) and schema.colors[0] == (255, 0, 0)
    names = ['top', 'hip_r', 'hip_l', 'hand_l', 'hand_r', 'foot_l', 'foot_r', 'tail']
    layout = schema.dataset_layout(names, 'd.json')
    assert layout.direct == (-1, 0, 3, 4, 5, 6) and layout.derived == ((0, 2, 1),)
    assert layout.used_dataset_keypoints == (0, 1, 2, 3, 4, 5, 6)
    with pytest.raises(SchemaError, match=r"^d\.json: the category's keypoints lack 'top', which keypoint 'head'"):
        schema.dataset_layout(names[1:], 'd.json')


BAD = [
    (dict(limbs=[['pelvis', 'head'], ['head', 'elbow']]), r"limbs\[1\]: 'elbow' is not one of the keypoints"),
    (dict(sigmas={'pelvis': 0.1}), r"sigmas: no sigma for 'head'"),
    (dict(flip_pairs=[['hand_l', 'hand_r'], ['hand_r', 'foot_r']]), r"flip_pairs\[1\]: 'hand_r' is already in"),
    (dict(flip_pairs=[['hand_l', 'hand_l']]), r"flip_pairs\[0\]: joins 'hand_l' to itself"),
    (dict(flip_pairs=[['hand_l', 'hand_r'], ['hand_r', 'hand_l']]), r'flip_pairs: a pair is listed twice'),
    (
        dict(
            limbs=[
                ['pelvis', 'head'],
                ['hand_l', 'foot_l'],
                ['head', 'hand_l'],
                ['head', 'hand_r'],
                ['pelvis', 'foot_r'],
            ],
            completing_limbs=[],
        ),
        r"limbs\[1\] \['hand_l', 'foot_l'\]: 'hand_l' is not reached by an earlier limb",
    ),  # fmt: skip
    (
        dict(
            keypoints=['pelvis', 'head', 'hand_l', 'hand_r', 'foot_l', 'foot_r', 'tail'],
            sigmas={**figure()['sigmas'], 'tail': 0.1},
        ),
        r"keypoints: 'tail' is on no regular limb",
    ),  # fmt: skip
    (dict(completing_limbs=[['head', 'foot_r']]), r"completing_limbs: \['head', 'foot_r'\] is not one of the limbs"),
    (
        dict(limbs=figure()['limbs'][:5] + [['head', 'foot_r']], completing_limbs=[]),
        r"limbs\[5\] \['head', 'foot_r'\]: 'foot_r' is already reached by an earlier limb",
    ),
    (
        dict(
            limbs=figure()['limbs'] + [['hand_r', 'foot_r']],
            completing_limbs=[['hand_l', 'foot_l'], ['hand_r', 'foot_l']],
        ),
        r"completing_limbs: \['hand_r', 'foot_l'\] is not one of the limbs",
    ),
    (
        dict(
            limbs=figure()['limbs'] + [['hand_r', 'foot_l']],
            completing_limbs=[['hand_l', 'foot_l'], ['hand_r', 'foot_l']],
        ),
        r"completing_limbs \['hand_r', 'foot_l'\]: shares a keypoint with another completing limb",
    ),
    (
        dict(limbs=[figure()['limbs'][5]] + figure()['limbs'][:5]),
        r"limbs\[1\] \['pelvis', 'head'\]: comes after a completing limb",
    ),
    (dict(paf_channels=[[0, 1]] * 6), r'paf_channels: must use each of the channels 0..11 once'),
    (dict(keypoints=['pelvis', 'head', 'head']), r"keypoints: 'head' is listed twice"),
    (dict(sigmas={**figure()['sigmas'], 'head': -1}), r'sigmas\.head: must be a number > 0'),
    (dict(colours={}), r'colours: not a schema field'),
    (dict(derived={'pelvis': ['hip_l']}), r'derived\.pelvis: must be a pair of dataset keypoint names'),
]


@pytest.mark.parametrize(('change', 'message'), BAD)
def test_each_bad_schema_is_one_line_naming_file_and_field(change, message):
    with pytest.raises(SchemaError, match=r'^bad\.json: ' + message) as caught:
        schema_from_json(figure(**change), 'bad.json')
    assert '\n' not in str(caught.value)


def test_bad_files_and_names(tmp_path):
    with pytest.raises(SchemaError, match=r'^coco19: no such keypoint schema \(shipped: coco17, coco18'):
        load_schema('coco19')
    broken = tmp_path / 'broken.json'
    broken.write_text('{"name": ')
    with pytest.raises(SchemaError, match=rf'^{broken}: not valid JSON'):
        load_schema(broken)
    broken.write_text('[1, 2]')
    with pytest.raises(SchemaError, match=rf'^{broken}: a keypoint schema is a JSON object, not list'):
        load_schema(broken)
    with pytest.raises(SchemaError, match='missing.json: cannot read the schema'):
        load_schema(tmp_path / 'missing.json')
