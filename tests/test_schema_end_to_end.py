"""A non-COCO keypoint schema end to end, through the commands users run: synthetic data in the `figure`
skeleton -> lwop train -> lwop evaluate (AP with the schema's sigmas) -> lwop convert to ONNX (the file
carries the schema) -> lwop infer (JSON in the schema's names, K keypoints per person)."""

import json
import subprocess
import sys

import onnx
import pytest
from cli_runs import lwop

from lwop_jax.schema import load_schema

pytest.importorskip('tensorflow')
pytest.importorskip('pycocotools')


# Training long enough to find people: the demo's network (half-width backbone to conv4_2, no refinement stage,
# crops 96, labels sized for 288, base lr 1e-3) with 64 channels, overfitting the 4 images it is scored on
# (people 112-184 px in 368-px-high images: lwop evaluate's base height 368 sees them at their own size).
# Measured (2 cores, AP on the 4 images): 200 iterations 0.000, 300 0.215, 400 0.236, 500 0.485, 600 0.708;
# AP50 1.0 from 300 on. Base lr 2e-3 found nobody by 300.
TRAIN_STEPS = 500


@pytest.mark.slow
def test_figure_schema_trains_evaluates_exports_and_runs(tmp_path):
    schema = load_schema('figure')
    data = tmp_path / 'figure'
    lwop('synthetic', '--out', data, '--num-images', 4, '--seed', 3, '--skeleton', 'figure', '--people-inside',
         '--width', 256, '--height', 368, '--max-people', 2, '--min-person-height', 112, '--max-person-height', 0.5,
         '--clutter-shapes', 0, 4, '--crowd-probability', 0, cwd=tmp_path)  # fmt: skip
    labels, images = data / 'annotations.json', data / 'images'
    dataset = json.loads(labels.read_text())
    category = dataset['categories'][0]
    assert category['name'] == 'figure' and 'toe_l' in category['keypoints']

    workdir = tmp_path / 'run'
    lwop('train', '--config', 'tiny', '--workdir', workdir, f'--config.train_labels={labels}',
         f'--config.train_images={images}', '--config.keypoint_schema=figure', '--config.crop_size=96',
         '--config.label_net_input_size=288', '--config.batch_size=8', '--config.num_refinement_stages=0',
         '--config.backbone_width=0.5', '--config.backbone_depth=7', '--config.num_channels=64',
         f'--config.num_train_steps={TRAIN_STEPS}', f'--config.checkpoint_after={TRAIN_STEPS}', '--config.val_after=0',
         '--config.image_summary_after=0', '--config.tensorboard=False', cwd=tmp_path)  # fmt: skip

    stats = tmp_path / 'stats.json'
    lwop('evaluate', '--labels', labels, '--images-folder', images, '--checkpoint-path', workdir / 'checkpoints',
         '--backend', 'jax', '--output-name', tmp_path / 'detections.json', '--stats-json', stats, '--no-progress',
         cwd=tmp_path)  # fmt: skip
    ap = json.loads(stats.read_text())['stats']
    assert ap['AP'] > 0 and ap['AP50'] >= 0.5, ap  # people found, keypoints where the schema's sigmas score them
    detections = json.loads((tmp_path / 'detections.json').read_text())
    assert {d['image_id'] for d in detections} == {image['id'] for image in dataset['images']}
    for detection in detections:
        assert len(detection['keypoints']) == 3 * len(category['keypoints'])  # the dataset's 16 points

    exported = tmp_path / 'figure.onnx'
    lwop('convert', workdir / 'checkpoints', '--onnx', exported, cwd=tmp_path)
    stored = {p.key: p.value for p in onnx.load(str(exported)).metadata_props}
    assert json.loads(stored['lwop_jax.keypoint_schema'])['name'] == 'figure'

    poses = tmp_path / 'poses.json'
    result = lwop('infer', '--checkpoint-path', exported, '--images', images, '--height-size', 368, '--json', poses,
                  cwd=tmp_path)  # fmt: skip
    assert 'figure' in result.stdout
    payload = json.loads(poses.read_text())
    assert payload['keypoint_names'] == list(schema.keypoints) and payload['keypoint_schema'] == 'figure'
    assert len(payload['images']) == 4
    for image in payload['images']:
        assert image['people'], image['file']  # the exported model finds people on every image
        for person in image['people']:
            assert len(person['keypoints']) == schema.num_keypoints == 17
            assert sum(score > 0 for _, _, score in person['keypoints']) >= 2  # at least one limb


def test_a_schema_that_does_not_fit_the_heads_is_one_line(overfit_onnx, coco_mini_dir, tmp_path):
    result = subprocess.run(
        [sys.executable, '-m', 'lwop_jax', 'infer', '--checkpoint-path', str(overfit_onnx), '--keypoint-schema',
         'coco17', '--images', str(coco_mini_dir / 'val2017')],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"error: {overfit_onnx}: its heads (19 heatmaps, 38 PAFs) do not fit the keypoint schema 'coco17' "
        '(18 heatmaps, 36 PAFs)'
    ], result.stderr
