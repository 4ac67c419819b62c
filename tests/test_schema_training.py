"""Training in another keypoint schema: samples, network heads and checkpoints follow the schema."""

import json
import os

import numpy as np
import pytest

from lwop_jax.checkpoints import orbax_io
from lwop_jax.data import coco, pipeline, samples
from lwop_jax.errors import ModelFileError
from lwop_jax.schema import SchemaError, load_schema, schema_from_json

MINI_JSON = 'person_keypoints_val2017_mini.json'
COCO18_NAME = {  # coco17 name -> coco18 name of the same point
    'nose': 'nose', 'left_eye': 'l_eye', 'right_eye': 'r_eye', 'left_ear': 'l_ear', 'right_ear': 'r_ear',
    'left_shoulder': 'l_sho', 'right_shoulder': 'r_sho', 'left_elbow': 'l_elb', 'right_elbow': 'r_elb',
    'left_wrist': 'l_wri', 'right_wrist': 'r_wri', 'left_hip': 'l_hip', 'right_hip': 'r_hip',
    'left_knee': 'l_knee', 'right_knee': 'r_knee', 'left_ankle': 'l_ank', 'right_ankle': 'r_ank',
}  # fmt: skip


def sample(training_set, images, schema, index, seed=11):
    config = samples.SampleConfig(crop_size=184, schema=schema, layout=training_set.layout)
    source = samples.LabelFileSource(training_set.labels, images)
    return samples.process_sample(source.load(index), pipeline.sample_rng(seed, 0, index), config)


def test_coco17_samples_are_coco18_samples_without_the_neck(coco_mini_dir):
    """The same label and draws in two schemas: every coco17 heatmap and PAF is the coco18 channel of the
    same points (augmentation, flips and targets follow the names, not the positions)."""
    images = coco_mini_dir / 'val2017'
    coco18, coco17 = load_schema('coco18'), load_schema('coco17')
    set18 = coco.load_training_set(coco_mini_dir / MINI_JSON, images, schema=coco18)
    set17 = coco.load_training_set(coco_mini_dir / MINI_JSON, images, schema=coco17)
    assert len(set17.labels) == len(set18.labels) == 12
    flipped = 0
    for index in range(12):
        image18, heatmaps18, pafs18, mask18 = sample(set18, images, coco18, index, seed=index)
        image17, heatmaps17, pafs17, mask17 = sample(set17, images, coco17, index, seed=index)
        np.testing.assert_array_equal(image17, image18)
        np.testing.assert_array_equal(mask17, mask18)
        assert heatmaps17.shape[-1] == 18 and pafs17.shape[-1] == 36
        for k, name in enumerate(coco17.keypoints):
            np.testing.assert_array_equal(
                heatmaps17[..., k], heatmaps18[..., coco18.keypoints.index(COCO18_NAME[name])]
            )
        shared = 0
        for (a, b), (x, y) in zip(coco17.limbs, coco17.paf_channels):
            pair = (
                coco18.keypoints.index(COCO18_NAME[coco17.keypoints[a]]),
                coco18.keypoints.index(COCO18_NAME[coco17.keypoints[b]]),
            )
            if pair in coco18.limbs:
                x18, y18 = coco18.paf_channels[coco18.limbs.index(pair)]
                np.testing.assert_array_equal(pafs17[..., [x, y]], pafs18[..., [x18, y18]])
                shared += 1
        assert shared == 14  # the arms, legs below the hips, face and shoulder-ear limbs
        flipped += int(np.any(heatmaps17[..., :17].max(axis=(0, 1)) > 0.5))
    assert flipped > 6


def renamed_mini(coco_mini_dir, tmp_path):
    """The COCO mini labels with the category's keypoints renamed, as a custom dataset would name them."""
    content = json.loads((coco_mini_dir / MINI_JSON).read_text())
    names = content['categories'][0]['keypoints']
    content['categories'][0]['keypoints'] = [name.replace('left_', 'L.').replace('right_', 'R.') for name in names]
    path = tmp_path / 'renamed.json'
    path.write_text(json.dumps(content))
    return path


BODY7 = {
    'name': 'body7',
    'keypoints': ['pelvis', 'head', 'hand_l', 'hand_r', 'foot_l', 'foot_r', 'chest'],
    'derived': {'pelvis': ['L.hip', 'R.hip'], 'chest': ['L.shoulder', 'R.shoulder']},
    'source': {'head': 'nose', 'hand_l': 'L.wrist', 'hand_r': 'R.wrist', 'foot_l': 'L.ankle', 'foot_r': 'R.ankle'},
    'limbs': [['pelvis', 'chest'], ['chest', 'head'], ['chest', 'hand_l'], ['chest', 'hand_r'],
              ['pelvis', 'foot_l'], ['pelvis', 'foot_r']],
    'flip_pairs': [['hand_l', 'hand_r'], ['foot_l', 'foot_r']],
    'sigmas': {'pelvis': 0.107, 'head': 0.026, 'hand_l': 0.062, 'hand_r': 0.062, 'foot_l': 0.089,
               'foot_r': 0.089, 'chest': 0.079},
}  # fmt: skip


def test_a_custom_schema_reads_its_names_and_derives_its_midpoints(coco_mini_dir, tmp_path):
    schema = schema_from_json(BODY7, 'body7.json')
    labels_path = renamed_mini(coco_mini_dir, tmp_path)
    training_set = coco.load_training_set(labels_path, coco_mini_dir / 'val2017', schema=schema)
    assert training_set.layout.num_dataset_keypoints == 17 and len(training_set.layout.derived) == 2
    label = training_set.labels[0]
    converted = coco.convert_keypoints(coco.label_keypoints(label), label['img_width'], label['img_height'],
                                       training_set.layout)  # fmt: skip
    original = coco.convert_keypoints(coco.label_keypoints(label), label['img_width'], label['img_height'])
    coco18 = load_schema('coco18')
    np.testing.assert_array_equal(converted[:, 6], original[:, coco18.keypoints.index('neck')])  # chest = neck
    np.testing.assert_array_equal(converted[:, 3], original[:, coco18.keypoints.index('r_wri')])
    _, heatmaps, pafs, _ = sample(training_set, coco_mini_dir / 'val2017', schema, 0)
    assert heatmaps.shape[-1] == 8 and pafs.shape[-1] == 12
    with pytest.raises(SchemaError, match=r"renamed\.json: the category's keypoints lack 'left_shoulder'"):
        coco.load_training_set(labels_path, coco_mini_dir / 'val2017', schema=load_schema('coco18'))


@pytest.mark.slow
def test_training_in_coco17_writes_a_model_that_carries_its_schema(coco_mini_dir, tmp_path):
    pytest.importorskip('tensorflow')
    from lwop_jax.configs import default
    from lwop_jax.training import loop

    config = default.get_config()
    config.update(
        train_labels=os.fspath(coco_mini_dir / MINI_JSON), train_images=os.fspath(coco_mini_dir / 'val2017'),
        keypoint_schema='coco17', crop_size=64, batch_size=2, num_refinement_stages=0, backbone_width=0.5,
        backbone_depth=7, num_channels=32, num_train_steps=2, checkpoint_after=2, val_after=0,
        image_summary_after=0, tensorboard=False, num_parallel_calls=1, async_checkpointing=False,
    )  # fmt: skip
    loop.train_and_evaluate(config, tmp_path)
    model = orbax_io.load_any(tmp_path / 'checkpoints')
    assert model.keypoint_schema == load_schema('coco17')
    assert (model.num_heatmaps, model.num_pafs) == (18, 36)
    heatmaps, pafs = model(np.zeros((1, 64, 64, 3), np.float32))[-1]
    assert heatmaps.shape == (1, 8, 8, 18) and pafs.shape == (1, 8, 8, 36)

    meta_path = tmp_path / 'checkpoints' / '2' / 'meta' / 'metadata'
    meta = json.loads(meta_path.read_text())
    meta['num_heatmaps'] = 19
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(ModelFileError, match=r"heads \(19 heatmaps, 36 PAFs\) do not fit its keypoint schema 'coco17'"):
        orbax_io.load_any(tmp_path / 'checkpoints')
