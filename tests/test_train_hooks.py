"""What a training run starts from and what it checks on the way, through the code users run:
``create_model`` with ``from_mobilenet``, and the periodic COCO validation (pycocotools on the COCO mini
images) of a 3-stage network scored with 1 refinement stage, as the original evaluates its 3-stage run."""

import json
import os

import numpy as np
import pytest

from lwop_jax.checkpoints import torch_names
from lwop_jax.checkpoints.torch_file import load_torch_file
from lwop_jax.model.variables import variables
from lwop_jax.training import loop as train_loop
from lwop_jax.training import model_init
from lwop_jax.training.monitoring import default_evaluate_fn

pytest.importorskip('pycocotools')
pytest.importorskip('tensorflow')

MINI_JSON = 'person_keypoints_val2017_mini.json'


def base_config(**overrides):
    from lwop_jax.configs import default

    config = default.get_config()
    for key, value in overrides.items():
        config[key] = value
    return config


def test_create_model_from_mobilenet_takes_the_backbone_from_the_file(reference_dir):
    path = reference_dir / 'mobilenet_sgd_format.pth.tar'
    config = base_config(init_from=str(path), from_mobilenet=True, num_refinement_stages=1, seed=5)
    model = model_init.create_model(config)
    untouched = model_init.create_model(base_config(num_refinement_stages=1, seed=5))
    source = load_torch_file(path)['state_dict']
    source = {key.removeprefix('module.'): value for key, value in source.items()}
    arrays = {key: np.asarray(var.get_value()) for key, var in variables(model).items()}
    initial = {key: np.asarray(var.get_value()) for key, var in variables(untouched).items()}
    backbone = 0
    for torch_key, (key, is_kernel) in torch_names._torch_names(model).items():
        if key.startswith('model.'):
            want = source[torch_key].transpose(2, 3, 1, 0) if is_kernel else source[torch_key]
            np.testing.assert_array_equal(arrays[key], np.asarray(want), err_msg=key)
            backbone += 1
        else:  # CPM and stages keep the seed's initialisation
            np.testing.assert_array_equal(arrays[key], initial[key], err_msg=key)
    assert backbone == 115


@pytest.mark.slow
def test_periodic_validation_scores_a_three_stage_run_with_one_stage(coco_mini_dir, tmp_path):
    labels, images = coco_mini_dir / MINI_JSON, coco_mini_dir / 'val2017'
    config = base_config(
        train_labels=str(labels), train_images=str(images), val_labels=str(labels), val_images=str(images),
        crop_size=64, batch_size=2, num_refinement_stages=3, eval_num_refinement_stages=1,
        backbone_width=0.5, backbone_depth=7, num_channels=32, num_train_steps=3, val_after=2,
        checkpoint_after=3, log_after=1, image_summary_after=0, tensorboard=False, num_parallel_calls=1,
        async_checkpointing=False,
    )  # fmt: skip
    real_evaluation = default_evaluate_fn(config, tmp_path)
    scored = []

    def evaluate(model):
        stats = real_evaluation(model)  # pycocotools on the 4 images, detections written to the workdir
        scored.append((model.num_refinement_stages, len(model.refinement_stages), sorted(stats)))
        return stats

    train_loop.train_and_evaluate(config, tmp_path, evaluate_fn=evaluate)
    assert [entry[:2] for entry in scored] == [(1, 1), (1, 1)]  # at iteration 2 and at the last, 3
    assert 'AP' in scored[0][2]
    detections = json.loads((tmp_path / config.val_output_name).read_text())
    assert isinstance(detections, list)
    for detection in detections:
        assert len(detection['keypoints']) == 17 * 3
    # The checkpoint keeps all three stages and records how the run is evaluated.
    meta = json.loads((tmp_path / 'checkpoints' / '3' / 'meta' / 'metadata').read_text())
    assert meta['num_refinement_stages'] == 3 and meta['eval_num_refinement_stages'] == 1
    assert os.path.isdir(tmp_path / 'checkpoints' / '3' / 'model')
