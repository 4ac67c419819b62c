"""Training: the original's optimizer groups and one Adam step, loss, schedule, loop, resume, sharding.

Loop tests use tiny synthetic batches (64x64 crops, batch 2) through the real train_and_evaluate, the
real orbax CheckpointManager and the real jitted step, so they run on 2 CPU cores in about a minute.
"""

import logging
import os
import pathlib
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from lwop_jax import errors
from lwop_jax.checkpoints import orbax_io
from lwop_jax.checkpoints import torch_names as torch_naming
from lwop_jax.checkpoints.torch_file import load_torch_file
from lwop_jax.model import PoseNet, variables
from lwop_jax.training import data as train_data
from lwop_jax.training import loop as train_loop
from lwop_jax.training import loss as train_loss
from lwop_jax.training import model_init
from lwop_jax.training import optimizer as train_optimizer
from lwop_jax.training import step as train_step_lib

PROJECT_ROOT = pathlib.Path(__file__).resolve().parents[1]
# For k = 1, from the reference README section 1 (the original train.py's 13 Adam groups).
EXPECTED_GROUP_SIZES = [12, 11, 23, 23, 5, 2, 3, 7, 7, 19, 19, 10, 10]
EXPECTED_GROUP_LRS = [4e-5, 4e-5, 4e-5, 8e-5, 4e-5, 8e-5, 4e-5, 4e-5, 8e-5, 1.6e-4, 3.2e-4, 4e-5, 8e-5]
EXPECTED_GROUP_DECAY = [5e-4, 0, 0, 0, 5e-4, 0, 0, 5e-4, 0, 5e-4, 0, 0, 0]


# ------------------------------------------------------------------------------------ helpers


def small_config(**overrides):
    from lwop_jax.configs import default

    config = default.get_config()
    config.crop_size = 64
    config.batch_size = 2
    config.base_lr = 1e-3
    config.num_train_steps = 4
    config.checkpoint_after = 2
    config.log_after = 1
    config.tensorboard = False
    config.image_summary_after = 0
    config.val_after = 0
    for key, value in overrides.items():
        config[key] = value
    return config


def synthetic_batch(index, batch_size=2, size=64):
    """A deterministic batch that differs per index, so a wrong data position changes the result."""
    rng = np.random.default_rng(1000 + index)
    cells = size // 8
    return {
        'image': (rng.normal(size=(batch_size, size, size, 3)) * 0.4).astype(np.float32),
        'heatmaps': rng.uniform(size=(batch_size, cells, cells, 19)).astype(np.float32),
        'pafs': (rng.normal(size=(batch_size, cells, cells, 38)) * 0.3).astype(np.float32),
        'mask': (rng.uniform(size=(batch_size, cells, cells)) > 0.1).astype(np.float32),
    }


class Interrupted(Exception):
    """Stands for the process being killed in the middle of training."""


def synthetic_data(*, interrupt_at=None, nan_at=None, starts=None):
    def batches(start_batch):
        if starts is not None:
            starts.append(start_batch)
        index = start_batch
        while True:
            if index == interrupt_at:
                raise Interrupted(f'stopped before batch {index}')
            batch = synthetic_batch(index)
            if index == nan_at:
                batch['image'][:] = np.nan
            yield batch
            index += 1

    return train_data.TrainData(num_examples=20, batches=batches)


def flat_arrays(tree):
    return [np.asarray(leaf) for leaf in jax.tree.leaves(tree)]


# ------------------------------------------------------------------------- groups and Adam step


def test_param_groups_sizes_lrs_and_decay_match_the_original(reference_dir):
    model = PoseNet(1)
    names = train_optimizer.param_group_names(model)
    sizes = [sum(1 for g in names.values() if g == group.name) for group in train_optimizer.PARAM_GROUPS]
    assert sizes == EXPECTED_GROUP_SIZES
    assert sum(sizes) == len(names) == 151
    lrs = [4e-5 * group.lr_multiplier for group in train_optimizer.PARAM_GROUPS]
    np.testing.assert_allclose(lrs, EXPECTED_GROUP_LRS, rtol=1e-12)
    decay = [5e-4 if group.weight_decay else 0 for group in train_optimizer.PARAM_GROUPS]
    assert decay == EXPECTED_GROUP_DECAY
    # ... and the same as the optimizer state the original wrote into the fixture.
    stored = load_torch_file(reference_dir / 'lwop_random_1stage_legacy.pth')['optimizer']['param_groups']
    assert [len(g['params']) for g in stored] == sizes
    np.testing.assert_allclose([g['lr'] for g in stored], lrs, rtol=1e-12)
    assert [g['weight_decay'] for g in stored] == decay


def test_groups_of_three_refinement_stages():
    sizes = {}
    for group in train_optimizer.param_group_names(PoseNet(3)).values():
        sizes[group] = sizes.get(group, 0) + 1
    assert sizes['refinement_conv_weight'] == 3 * 19 and sizes['refinement_bn_bias'] == 3 * 10
    assert sizes['backbone_conv_weight'] == 12


def test_one_adam_step_reproduces_the_fixture(reference_dir):
    """From the stored post-step weights and Adam moments, rebuild the pre-step weights and the gradient;
    our optimizer must then produce the stored post-step weights and moments."""
    checkpoint = load_torch_file(reference_dir / 'lwop_random_1stage_legacy.pth')
    state_dict, optimizer = checkpoint['state_dict'], checkpoint['optimizer']
    model = PoseNet(1)
    torch_names = torch_naming._torch_names(model)  # torch key -> (nnx key, is conv kernel)
    groups = train_optimizer.param_group_names(model)
    b1, b2, eps = 0.9, 0.999, 1e-8
    before, gradient, after, mu, nu, lr_of = {}, {}, {}, {}, {}, {}
    for group, stored_group in zip(train_optimizer.PARAM_GROUPS, optimizer['param_groups']):
        # Torch numbers the parameters group by group, each group in module order (= state_dict order).
        keys = [k for k in state_dict if k in torch_names and groups.get(torch_names[k][0]) == group.name]
        assert len(keys) == len(stored_group['params']), group.name
        lr, decay = stored_group['lr'], stored_group['weight_decay']
        for key, param_index in zip(keys, stored_group['params']):
            adam = optimizer['state'][param_index]
            assert float(adam['step']) == 1
            p_after = np.asarray(state_dict[key], np.float64)
            m, v = np.asarray(adam['exp_avg'], np.float64), np.asarray(adam['exp_avg_sq'], np.float64)
            assert m.shape == p_after.shape, (key, m.shape, p_after.shape)
            step = lr / (1 - b1) * m / (np.sqrt(v) / np.sqrt(1 - b2) + eps)
            p_before = (p_after + step).astype(np.float32).astype(np.float64)
            grad = m / (1 - b1) - decay * p_before  # exp_avg = (1 - b1) (grad + decay * p) after one step
            nnx_key, is_kernel = torch_names[key]
            layout = (lambda a: a.transpose(2, 3, 1, 0)) if is_kernel else (lambda a: a)
            for store, value in ((before, p_before), (gradient, grad), (after, p_after), (mu, m), (nu, v)):
                store[nnx_key] = layout(value)
            lr_of[nnx_key] = lr
    variables.assign(model, {k: v.astype(np.float32) for k, v in before.items()}, 'pre-step', strict=False)
    params = nnx.state(model, nnx.Param)
    grads = jax.tree_util.tree_map_with_path(
        lambda path, leaf: jnp.asarray(gradient[train_optimizer._dotted(path)], jnp.float32), params
    )
    tx = train_optimizer.make_optimizer(model, base_lr=4e-5, weight_decay=5e-4, steps_per_epoch=1000)
    updates, opt_state = jax.jit(tx.update)(grads, tx.init(params), params)
    new_params = optax.apply_updates(params, updates)

    def by_key(tree):
        leaves = jax.tree_util.tree_leaves_with_path(tree)
        return {train_optimizer._dotted(path): np.asarray(leaf) for path, leaf in leaves}

    new, our_mu, our_nu = (
        by_key(new_params),
        by_key(optax.tree_utils.tree_get(opt_state, 'mu')),
        by_key(optax.tree_utils.tree_get(opt_state, 'nu')),
    )
    assert set(new) == set(after) and len(new) == 151
    for key in after:
        moved = np.abs(after[key] - before[key])
        # The step is ~lr * sign(grad): a wrong group lr (x2 at least) would be off by >= 4e-5.
        assert np.median(moved) > 0.5 * lr_of[key], key
        np.testing.assert_allclose(new[key], after[key], rtol=0, atol=1e-6, err_msg=key)
        np.testing.assert_allclose(our_mu[key], mu[key], rtol=1e-5, atol=1e-6 * np.abs(mu[key]).max(), err_msg=key)
        np.testing.assert_allclose(our_nu[key], nu[key], rtol=1e-4, atol=1e-6 * np.abs(nu[key]).max(), err_msg=key)


# ----------------------------------------------------------------------------- loss, schedule


def test_loss_is_the_original_l2_loss_summed_over_stages():
    rng = np.random.default_rng(0)
    outputs = [(rng.normal(size=(2, 3, 4, 19)), rng.normal(size=(2, 3, 4, 38))) for _ in range(2)]
    heatmaps, pafs = rng.normal(size=(2, 3, 4, 19)), rng.normal(size=(2, 3, 4, 38))
    mask = rng.uniform(size=(2, 3, 4))
    total, per_stage = train_loss.loss_fn(outputs, heatmaps, pafs, mask)
    expected = {}
    for s, (h, p) in enumerate(outputs, start=1):
        expected[f'stage{s}_heatmaps'] = np.sum(((h - heatmaps) * mask[..., None]) ** 2 / 2 / 2)
        expected[f'stage{s}_pafs'] = np.sum(((p - pafs) * mask[..., None]) ** 2 / 2 / 2)
    assert per_stage.keys() == expected.keys()
    for key in expected:
        np.testing.assert_allclose(per_stage[key], expected[key], rtol=1e-6)
    np.testing.assert_allclose(total, sum(expected.values()), rtol=1e-6)


def test_multistep_schedule_and_steps_per_epoch_as_the_original():
    # DataLoader batches per epoch = ceil(N / B); an iteration every batches_per_iter batches.
    assert train_data.steps_per_epoch(1001, 80) == 13
    assert train_data.steps_per_epoch(1001, 80, batches_per_iter=2) == 6
    assert train_data.steps_per_epoch(3, 80) == 1
    spe = 10
    # scheduler.step() at each epoch start: epoch e runs with last_epoch = e + 1, so the drop to x0.333
    # happens at the start of the 100th epoch (index 99).
    factor = lambda step: float(train_optimizer.epoch_lr_factor(step, spe))  # noqa: E731
    assert factor(0) == 1.0 and factor(98 * spe + 9) == 1.0
    np.testing.assert_allclose(factor(99 * spe), 0.333, rtol=1e-6)
    np.testing.assert_allclose(factor(199 * spe - 1), 0.333, rtol=1e-6)
    np.testing.assert_allclose(factor(199 * spe), 0.333**2, rtol=1e-6)
    np.testing.assert_allclose(factor(259 * spe), 0.333**3, rtol=1e-6)


def test_config_files_load(coco_mini_dir):
    from lwop_jax.configs import coco_recipe, coco_stage1, coco_stage2, coco_stage3, default, tiny

    assert default.get_config().batch_size == 80
    assert coco_stage1.get_config().from_mobilenet and coco_stage1.get_config().num_train_steps == 420_000
    assert coco_stage2.get_config().num_train_steps == 280_000
    stage3 = coco_stage3.get_config()
    assert stage3.num_refinement_stages == 3 and stage3.eval_num_refinement_stages == 1
    recipe = coco_recipe.get_config()
    recipe.coco_dir, recipe.batch_size = '/elsewhere', 40
    assert recipe.stages.stage3.train_images == '/elsewhere/train2017'
    assert recipe.stages.stage2.batch_size == 40
    config = tiny.get_config()
    assert (PROJECT_ROOT / config.train_labels).exists() and (PROJECT_ROOT / config.train_images).is_dir()


def test_init_from_a_one_stage_checkpoint_into_three_stages(reference_dir):
    config = small_config(num_refinement_stages=3, init_from=str(reference_dir / 'lwop_random_1stage_zip.pth'))
    model = model_init.create_model(config)
    reference = torch_naming.model_from_torch(reference_dir / 'lwop_random_1stage_zip.pth')
    ours, theirs = variables.variables(model), variables.variables(reference)
    for key, var in theirs.items():
        np.testing.assert_array_equal(np.asarray(ours[key].get_value()), np.asarray(var.get_value()), err_msg=key)
    assert any(key.startswith('refinement_stages.2.') for key in ours)


# ------------------------------------------------------------------------------- loop tests


def coco_mini_batch(coco_mini_dir, size=96):
    """Two crops of the COCO mini images with the original's targets (mask all ones)."""
    import cv2

    from lwop_jax.data import coco
    from lwop_jax.data.targets import render_targets

    annotations = coco_mini_dir / 'person_keypoints_val2017_mini.json'
    labels = coco.prepare_annotations(coco.load_coco_json(annotations))[:2]
    images, heatmaps, pafs = [], [], []
    for label in labels:
        image = cv2.imread(str(coco_mini_dir / 'val2017' / label['img_paths']), cv2.IMREAD_COLOR)
        keypoints = coco.convert_keypoints(coco.label_keypoints(label), label['img_width'], label['img_height'])
        # A crop of the main person's box, scaled to size x size.
        x, y, w, h = label['bbox']
        side = max(w, h) * 1.2
        x0, y0, scale = x + w / 2 - side / 2, y + h / 2 - side / 2, size / side
        affine = np.array([[scale, 0, -x0 * scale], [0, scale, -y0 * scale]])
        crop = cv2.warpAffine(image, affine, (size, size), borderValue=(128, 128, 128))
        keypoints[..., 0] = (keypoints[..., 0] - x0) * scale
        keypoints[..., 1] = (keypoints[..., 1] - y0) * scale
        keypoints[..., 2] = np.where(
            (keypoints[..., 0] < 0)
            | (keypoints[..., 0] >= size)
            | (keypoints[..., 1] < 0)
            | (keypoints[..., 1] >= size),
            2,
            keypoints[..., 2],
        )
        heatmap, paf = render_targets(keypoints, size, size)
        images.append((crop.astype(np.float32) - 128) / 256)
        heatmaps.append(heatmap)
        pafs.append(paf)
    cells = size // 8
    return {
        'image': np.stack(images),
        'heatmaps': np.stack(heatmaps),
        'pafs': np.stack(pafs),
        'mask': np.ones((2, cells, cells), np.float32),
    }


def read_scalars(logdir, tag):
    import tensorflow as tf

    values = {}
    for path in sorted(pathlib.Path(logdir).glob('events.out.tfevents.*')):
        for event in tf.compat.v1.train.summary_iterator(str(path)):
            for value in event.summary.value:
                if value.tag == tag:
                    values[event.step] = float(tf.make_ndarray(value.tensor))
    return [values[step] for step in sorted(values)]


@pytest.mark.slow
def test_a_few_steps_lower_the_loss_and_log_to_tensorboard(coco_mini_dir, tmp_path):
    batch = coco_mini_batch(coco_mini_dir)
    data = train_data.TrainData(num_examples=2, batches=lambda start: iter(lambda: batch, None))
    config = small_config(
        crop_size=96,
        num_train_steps=8,
        checkpoint_after=8,
        tensorboard=True,
        image_summary_after=8,
        async_checkpointing=False,
    )
    train_loop.train_and_evaluate(config, tmp_path, train_data=data, evaluate_fn=None)
    losses = read_scalars(tmp_path / 'tensorboard', 'train/loss')
    assert len(losses) == 8 and np.isfinite(losses).all()
    assert losses[-1] < 0.8 * losses[0], losses
    assert read_scalars(tmp_path / 'tensorboard', 'train/learning_rate') == [pytest.approx(1e-3)] * 8
    stage_tags = read_scalars(tmp_path / 'tensorboard', 'train/stage2_pafs')
    assert len(stage_tags) == 8
    # The heatmap picture at iteration 8, as TensorBoard's image plugin reads it: width, height, a PNG.
    import tensorflow as tf

    images = [
        (event.step, value)
        for path in (tmp_path / 'tensorboard').glob('events.out.tfevents.*')
        for event in tf.compat.v1.train.summary_iterator(str(path))
        for value in event.summary.value
        if value.tag == 'train/heatmaps_input_target_predicted'
    ]
    assert [step for step, _ in images] == [8]
    assert images[0][1].metadata.plugin_data.plugin_name == 'images'
    width, height, png = tf.make_ndarray(images[0][1].tensor)
    picture = tf.io.decode_png(png).numpy()
    assert picture.shape == (int(height), int(width), 3) and int(width) == 3 * int(height)


@pytest.mark.slow
def test_validation_runs_every_val_after_and_at_the_last_iteration(tmp_path):
    """The evaluation hook gets an eval-mode model at iterations 2, 4 and the last one, 5 (a run's final
    weights are always scored, as the tiny overfit config relies on)."""
    seen = []

    def record(model):
        seen.append(all(getattr(m, 'use_running_average', True) for _, m in nnx.iter_modules(model)))
        return {'AP': 0.5}

    config = small_config(num_train_steps=5, checkpoint_after=5, val_after=2, async_checkpointing=False)
    train_loop.train_and_evaluate(config, tmp_path, train_data=synthetic_data(), evaluate_fn=record)
    assert seen == [True, True, True]


@pytest.mark.slow
def test_stopped_and_resumed_run_is_bit_identical_to_an_uninterrupted_one(tmp_path):
    config = small_config(num_train_steps=5, checkpoint_after=2, keep_checkpoints=2)
    uninterrupted = train_loop.train_and_evaluate(
        config, tmp_path / 'straight', train_data=synthetic_data(), evaluate_fn=None
    )
    # Killed while fetching batch 3 (iteration 4): the checkpoint of iteration 2 survives; iteration 3 is lost.
    with pytest.raises(Interrupted):
        train_loop.train_and_evaluate(
            config, tmp_path / 'resumed', train_data=synthetic_data(interrupt_at=3), evaluate_fn=None
        )
    starts = []
    resumed = train_loop.train_and_evaluate(
        config, tmp_path / 'resumed', train_data=synthetic_data(starts=starts), evaluate_fn=None
    )
    assert starts == [2]  # the data stream continued at batch 2, after the 2 batches of the checkpoint
    assert int(resumed.step) == int(uninterrupted.step) == 5
    for name in ('params', 'batch_stats', 'opt_state'):
        for a, b in zip(flat_arrays(getattr(uninterrupted, name)), flat_arrays(getattr(resumed, name))):
            np.testing.assert_array_equal(a, b, err_msg=name)
    # The checkpoint folder is a model that evaluation/export load with orbax_io.load_any.
    loaded = variables.variables(orbax_io.load_any(tmp_path / 'resumed' / 'checkpoints'))
    final = {
        train_optimizer._dotted(path): leaf
        for tree in (resumed.params, resumed.batch_stats)
        for path, leaf in jax.tree_util.tree_leaves_with_path(tree)
    }
    assert set(final) == set(loaded)
    for key, value in final.items():
        np.testing.assert_array_equal(np.asarray(loaded[key].get_value()), np.asarray(value), err_msg=key)
    assert sorted(int(p.name) for p in (tmp_path / 'resumed' / 'checkpoints').iterdir() if p.name.isdigit()) == [4, 5]


@pytest.mark.slow
def test_nonfinite_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path):
    config = small_config(num_train_steps=8, checkpoint_after=2, log_after=100)
    with pytest.raises(
        errors.NonFiniteLossError, match=r'non-finite loss at iteration 4.*last good checkpoint is iteration 2'
    ):
        train_loop.train_and_evaluate(config, tmp_path, train_data=synthetic_data(nan_at=3), evaluate_fn=None)
    steps = sorted(int(p.name) for p in (tmp_path / 'checkpoints').iterdir() if p.name.isdigit())
    assert steps == [2]
    model = orbax_io.load_any(tmp_path / 'checkpoints')
    assert all(np.isfinite(np.asarray(v.get_value())).all() for v in variables.variables(model).values())


SHARDED_SCRIPT = textwrap.dedent("""
    import json, sys
    import jax, numpy as np

    from lwop_jax.model import PoseNet
    from lwop_jax.training import optimizer as train_optimizer
    from lwop_jax.training import step as train_step_lib
    sys.path.insert(0, {tests!r})
    from test_train import synthetic_batch
    assert jax.device_count() == 4, jax.devices()
    results = {{}}
    for devices in (1, 4):
        model = PoseNet(1)
        # A small lr: Adam's first step is lr * sign(grad), so gradients within rounding of 0 (whose sign
        # depends on the summation order) move by the full lr; 1e-5 keeps that effect below the tolerance.
        tx = train_optimizer.make_optimizer(model, base_lr=1e-5, weight_decay=5e-4, steps_per_epoch=10)
        graphdef, state = train_step_lib.create_train_state(model, tx)
        mesh = train_step_lib.make_mesh(jax.devices()[:devices])
        state = train_step_lib.replicate_state(state, mesh)
        step = train_step_lib.jit_train_step(graphdef, tx, mesh)
        losses = []
        for index in range(2):
            batch = train_step_lib.global_batch([synthetic_batch(index, batch_size=4)], mesh)
            if index == 0:
                assert len(batch['image'].sharding.device_set) == devices
            state, metrics = step(state, batch)
            losses.append(float(metrics['loss']))
        results[devices] = {{'losses': losses,
                             'bn_mean': np.asarray(state.batch_stats['model'][0][1]['mean'][...]).tolist()}}
    print(json.dumps(results))
""")


@pytest.mark.slow
def test_step_sharded_over_four_cpu_devices_matches_one_device():
    env = dict(os.environ, XLA_FLAGS='--xla_force_host_platform_device_count=4', JAX_PLATFORMS='cpu')
    script = SHARDED_SCRIPT.format(tests=str(PROJECT_ROOT / 'tests'))
    result = subprocess.run(
        [sys.executable, '-c', script], env=env, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr[-3000:]
    import json

    results = json.loads(result.stdout.strip().splitlines()[-1])
    one, four = results['1'], results['4']
    # Same maths, different reduction order across devices: float32 rounding only. The first loss is
    # before any update; the second is after one Adam step on the sharded gradient.
    np.testing.assert_allclose(four['losses'][0], one['losses'][0], rtol=1e-5)
    np.testing.assert_allclose(four['losses'][1], one['losses'][1], rtol=1e-4)
    # BatchNorm statistics come from the global batch (sync BN), not from each device's slice.
    np.testing.assert_allclose(four['bn_mean'], one['bn_mean'], rtol=1e-5, atol=1e-7)


def _one_step(batches, *, dtype=None, seed=7):
    """One train step of a small network over ``batches`` (K batches accumulated); returns the new state
    and the metrics, on the host."""
    model = PoseNet(1, backbone_width=0.25, num_channels=32, dtype=dtype, rngs=nnx.Rngs(seed))
    tx = train_optimizer.make_optimizer(model, base_lr=1e-3, weight_decay=5e-4, steps_per_epoch=100)
    graphdef, state = train_step_lib.create_train_state(model, tx)
    mesh = train_step_lib.make_mesh(jax.devices()[:1])
    step = train_step_lib.jit_train_step(graphdef, tx, mesh)
    state, metrics = step(train_step_lib.replicate_state(state, mesh), train_step_lib.global_batch(batches, mesh))
    return jax.device_get(state), jax.device_get(metrics)


def _moments(state) -> np.ndarray:
    """Adam's first and second moments of every parameter, flattened: they carry the step's gradient."""
    leaves = [np.asarray(leaf, np.float64).ravel() for leaf in jax.tree.leaves(state.opt_state) if np.ndim(leaf) > 0]
    return np.concatenate(leaves)


@pytest.mark.slow
def test_accumulating_two_batches_of_4_is_one_step_of_8():
    """batches_per_iter=2 with batch 4 against batch 8 made of the same 4 samples twice: BatchNorm sees
    the same statistics either way (a sample set repeated has the same mean and biased variance), so the
    loss agrees within 1e-5 relative, and the gradient (in Adam's moments) within 5 % in L2 norm.

    Why a norm: in training mode this small network's gradient is dominated by float32 rounding in places
    (BatchNorm centres pre-activations at the ReLU kinks, and the biases before BatchNorm have a true
    gradient of 0), so merely reordering the 8 samples of one batch moves the moments by 1.9 % in L2 norm;
    accumulation measured 1.9 % too, and another batch moves them by 95 %. A wrong scaling of the
    accumulated gradient (say, no division by batches_per_iter) would be off by 50 % or more."""
    four = synthetic_batch(0, batch_size=4)
    eight = {key: np.concatenate([value, value]) for key, value in four.items()}
    accumulated, accumulated_metrics = _one_step([four, four])
    single, single_metrics = _one_step([eight])
    np.testing.assert_allclose(accumulated_metrics['loss'], single_metrics['loss'], rtol=1e-5)
    ours, theirs = _moments(accumulated), _moments(single)
    assert np.linalg.norm(ours - theirs) <= 0.05 * np.linalg.norm(theirs)


@pytest.mark.slow
def test_bfloat16_compute_keeps_float32_state_and_a_close_loss():
    """compute_dtype bfloat16: the loss of the same batch from the same weights is within 2 % of float32's
    (measured on two batches: 0.08 % and 0.43 %), and parameters, BatchNorm statistics and the optimizer
    state stay float32."""
    batch = synthetic_batch(1, batch_size=4)
    full, full_metrics = _one_step([batch])
    half, half_metrics = _one_step([batch], dtype=jnp.bfloat16)
    assert abs(half_metrics['loss'] - full_metrics['loss']) <= 0.02 * abs(full_metrics['loss'])
    for tree in (half.params, half.batch_stats, half.opt_state):
        dtypes = {np.asarray(leaf).dtype for leaf in jax.tree.leaves(tree) if np.asarray(leaf).dtype.kind == 'f'}
        assert dtypes == {np.dtype(np.float32)}, dtypes
    model = model_init.create_model(small_config(compute_dtype='bfloat16', num_refinement_stages=0))
    outputs = model(jnp.asarray(batch['image']))
    assert all(h.dtype == jnp.float32 and p.dtype == jnp.float32 for h, p in outputs)  # outputs float32 too


@pytest.mark.slow
@pytest.mark.parametrize('damage', ['truncate', 'delete'])
def test_a_damaged_newest_checkpoint_falls_back_to_the_newest_intact_one(tmp_path, caplog, damage):
    """The newest checkpoint with a data file truncated (or deleted), as a crash or a full disk leaves it:
    resume moves it aside and continues from the one before, with one warning line naming both, and
    ends bit-identical to an uninterrupted run."""
    config = small_config(num_train_steps=6, checkpoint_after=2)
    uninterrupted = train_loop.train_and_evaluate(
        config, tmp_path / 'straight', train_data=synthetic_data(), evaluate_fn=None
    )
    short = small_config(num_train_steps=4, checkpoint_after=2)
    train_loop.train_and_evaluate(short, tmp_path / 'damaged', train_data=synthetic_data(), evaluate_fn=None)
    newest = tmp_path / 'damaged' / 'checkpoints' / '4'
    victim = max((p for p in (newest / 'train_state').rglob('*') if p.is_file()), key=lambda p: p.stat().st_size)
    if damage == 'truncate':
        victim.write_bytes(victim.read_bytes()[: victim.stat().st_size // 2])
    else:
        victim.unlink()
    starts = []
    with caplog.at_level(logging.WARNING, logger='lwop_jax.training.checkpointing'):
        resumed = train_loop.train_and_evaluate(
            config, tmp_path / 'damaged', train_data=synthetic_data(starts=starts), evaluate_fn=None
        )
    warnings = [r.getMessage() for r in caplog.records if r.name == 'lwop_jax.training.checkpointing']
    assert len(warnings) == 1 and 'checkpoint 4 is damaged' in warnings[0] and 'from checkpoint 2' in warnings[0]
    assert '\n' not in warnings[0]
    assert starts == [2] and (tmp_path / 'damaged' / 'checkpoints' / 'damaged-4').is_dir()
    for name in ('params', 'batch_stats', 'opt_state'):
        for a, b in zip(flat_arrays(getattr(uninterrupted, name)), flat_arrays(getattr(resumed, name))):
            np.testing.assert_array_equal(a, b, err_msg=name)
