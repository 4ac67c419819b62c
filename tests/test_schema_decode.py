"""The decoder follows the model's keypoint schema: the same skeleton under other keypoint numbers decodes
to the same people, and COCO conversion goes by dataset names."""

import numpy as np
import pytest

from lwop_jax.inference.decode import decode, to_coco_keypoints
from lwop_jax.schema import load_schema, schema_from_json
from lwop_jax.skeleton import COCO_KEYPOINT_NAMES


@pytest.fixture(scope='module')
def maps(reference_dir):
    with np.load(reference_dir / 'decode_reference.npz') as data:
        return [(data[f'{case}_heatmaps'], data[f'{case}_pafs']) for case in ('c000', 'c001', 'c002', 'c003')]


def renumbered_coco18(permutation):
    """coco18 with its keypoints listed in another order (keypoint i of the new schema is old keypoint
    permutation[i]); limbs, channels and everything else unchanged."""
    content = load_schema('coco18').to_json()
    content['name'] = 'coco18-renumbered'
    content['keypoints'] = [content['keypoints'][old] for old in permutation]
    return schema_from_json(content, 'renumbered.json')


def test_renumbered_keypoints_decode_to_the_same_people(maps):
    permutation = np.random.default_rng(3).permutation(18)
    schema = renumbered_coco18(permutation)
    people = 0
    for heatmaps, pafs in maps:
        want = decode(heatmaps, pafs)
        got = decode(heatmaps[..., list(permutation) + [18]], pafs, schema=schema)
        np.testing.assert_array_equal(got.keypoints, want.keypoints[:, permutation])
        np.testing.assert_array_equal(got.scores, want.scores)
        np.testing.assert_array_equal(got.num_keypoints, want.num_keypoints)
        # COCO conversion by names: the same 51 numbers whatever the network's keypoint order.
        for converted, original in zip(to_coco_keypoints(got, schema), to_coco_keypoints(want)):
            np.testing.assert_array_equal(converted, original)
        people += len(want)
    assert people >= 10


def coco17_maps_from_coco18(heatmaps, pafs18, channels):
    """coco17's maps taken from coco18's: its heatmap channels, and for each coco17 limb that coco18 also has
    that limb's PAF channels (the others stay empty)."""
    coco18, coco17 = load_schema('coco18'), load_schema('coco17')
    pafs = np.zeros(pafs18.shape[:2] + (coco17.num_pafs,), np.float32)
    for (a, b), (x, y) in zip(coco17.limbs, coco17.paf_channels):
        pair = (channels[a], channels[b])
        if pair in coco18.limbs:
            pafs[..., [x, y]] = pafs18[..., list(coco18.paf_channels[coco18.limbs.index(pair)])]
    return heatmaps[..., channels], pafs


def test_coco17_decodes_its_own_maps_in_cocos_order(maps):
    """coco17 channels taken from coco18's maps (the same points, no neck): people come out with 17
    keypoints that are coco18's (the limbs differ, so only found points are compared): each coco17 person's
    found keypoints (position and score) are those of exactly one coco18 person, at the same COCO names."""
    coco18, coco17 = load_schema('coco18'), load_schema('coco17')
    layout = coco18.dataset_layout(COCO_KEYPOINT_NAMES, 'coco')
    channels = [layout.direct.index(k) for k in range(17)] + [18]
    compared = 0
    for heatmaps18, pafs18 in maps:
        poses = decode(*coco17_maps_from_coco18(heatmaps18, pafs18, channels), schema=coco17)
        assert poses.keypoints.shape[1:] == (17, 3) and len(poses) > 0
        coco, scores = to_coco_keypoints(poses, coco17)
        assert coco.shape == (len(poses), 51) and scores.shape == (len(poses),)
        found = poses.keypoints[..., 0] >= 0
        np.testing.assert_array_equal(coco.reshape(-1, 17, 3)[..., 2], found)
        # coco18's people, their keypoints listed in coco17's order (the neck left out).
        coco18_people = decode(heatmaps18, pafs18).keypoints[:, channels[:17]]
        for person, person_found in zip(poses.keypoints, found):
            assert person_found.sum() >= 2  # a person is at least one limb
            same = [np.array_equal(other[person_found], person[person_found]) for other in coco18_people]
            assert sum(same) == 1, (person, coco18_people)
            compared += int(person_found.sum())
    assert compared >= 100  # measured: 184 keypoints of 49 coco17 people over the four cases
