"""``lwop train --config coco_recipe`` as a user runs it, its sizes made tiny by overrides, on the COCO mini images:
stage 1 from MobileNet weights, stage 2 from stage 1's final checkpoint, stage 3 (three refinement stages) from
stage 2's; killed with SIGKILL in the middle of stage 2, the same command again finishes stage 2 from its last
checkpoint and runs stage 3, without training stage 1 again."""

import os
import re
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest

pytest.importorskip('tensorflow')

from flax import nnx

from lwop_jax.checkpoints.orbax_io import load_any

STEPS = {'stage1': 2, 'stage2': 3, 'stage3': 2}
KILL = ('stage2', 2)  # the run dies right after this stage's checkpoint of this iteration is written
BASE_LR = 4e-5  # the recipe's (coco_stage1's) base lr, kept for stages 2 and 3
STAGE1_LR = 1e-2  # stage 1 moves its weights far (about 1e-2 an iteration) from where any stage starts fresh
MAX_LR_MULTIPLIER = 8  # the largest of the 13 Adam groups' (refinement stage biases)

DRIVER = textwrap.dedent(
    """
    import os, signal, sys
    from lwop_jax.training import loop

    stage, kill_step = sys.argv[1], int(sys.argv[2])
    save_checkpoint = loop.save_checkpoint

    def save_then_die(manager, graphdef, state, data_position, config):
        save_checkpoint(manager, graphdef, state, data_position, config)
        step = data_position['batches_consumed'] // config.batches_per_iter
        if step == kill_step and manager.directory.parent.name == stage:
            manager.wait_until_finished()
            os.kill(os.getpid(), signal.SIGKILL)

    loop.save_checkpoint = save_then_die
    from lwop_jax.cli.main import main

    sys.exit(main(sys.argv[3:]))
    """
)


def recipe_arguments(coco_dir, mobilenet, workdir) -> list[str]:
    arguments = ['train', '--config', 'coco_recipe', '--workdir', str(workdir), '-v']
    shared = {  # keys the recipe sets once for every stage
        'coco_dir': coco_dir, 'mobilenet_weights': mobilenet, 'batch_size': 2, 'checkpoint_after': 1,
        'val_after': 0, 'log_after': 1, 'keep_checkpoints': 0, 'num_parallel_calls': 1,
    }  # fmt: skip
    arguments += [f'--config.{key}={value}' for key, value in shared.items()]
    for stage, steps in STEPS.items():
        per_stage = {
            'num_train_steps': steps, 'crop_size': 64, 'backbone_depth': 7, 'num_channels': 32,
            'image_summary_after': 0, 'tensorboard': False, 'async_checkpointing': False,
        }  # fmt: skip
        arguments += [f'--config.stages.{stage}.{key}={value}' for key, value in per_stage.items()]
    return arguments + [f'--config.stages.stage1.base_lr={STAGE1_LR}']


def run(arguments, cwd, kill=None) -> subprocess.CompletedProcess:
    prefix = ['-c', DRIVER, kill[0], str(kill[1])] if kill else ['-m', 'lwop_jax']
    return subprocess.run(
        [sys.executable, *prefix, *arguments],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=900,
        env=dict(os.environ, JAX_PLATFORMS='cpu'),
    )


def steps(workdir, stage) -> list[int]:
    return sorted(int(p.name) for p in (workdir / stage / 'checkpoints').iterdir() if p.name.isdigit())


def parameters(workdir, stage, step) -> dict[str, np.ndarray]:
    """The trained parameters (not the BatchNorm statistics) of one checkpoint, by path."""
    model = load_any(workdir / stage / 'checkpoints' / str(step))
    return {
        '.'.join(map(str, path)): np.asarray(value.get_value())
        for path, value in nnx.to_flat_state(nnx.state(model, nnx.Param))
    }


def assert_one_adam_step_from(start: dict, after: dict, lr: float) -> int:
    """Every parameter of ``after`` that ``start`` has lies within one Adam step of it. Adam's first step is
    lr x multiplier x m / (sqrt(v) + eps) with m = g and v = g^2 after bias correction, so |g| / (|g| + eps) <= 1
    of lr x multiplier; float32 rounding of the sum adds half an ulp of the weight. Returns how many tensors."""
    shared = sorted(set(start) & set(after))
    for key in shared:
        bound = MAX_LR_MULTIPLIER * lr * (1 + 1e-6) + np.abs(start[key]) * 2.0**-23
        assert (np.abs(after[key] - start[key]) <= bound).all(), (key, np.abs(after[key] - start[key]).max())
    return len(shared)


@pytest.mark.slow
def test_recipe_chains_its_stages_and_a_rerun_continues_across_them(reference_dir, coco_mini_dir, tmp_path):
    coco = tmp_path / 'coco'  # the layout the recipe reads: annotations/person_keypoints_train2017.json, train2017/
    (coco / 'annotations').mkdir(parents=True)
    (coco / 'annotations' / 'person_keypoints_train2017.json').symlink_to(
        coco_mini_dir / 'person_keypoints_val2017_mini.json'
    )
    (coco / 'train2017').symlink_to(coco_mini_dir / 'val2017')
    workdir = tmp_path / 'recipe'
    arguments = recipe_arguments(coco, reference_dir / 'mobilenet_sgd_format.pth.tar', workdir)

    killed = run(arguments, tmp_path, kill=KILL)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    assert steps(workdir, 'stage1') == [1, 2] and steps(workdir, 'stage2') == [1, 2]
    assert not (workdir / 'stage3').exists()
    stage1_final = workdir / 'stage1' / 'checkpoints' / '2'
    stage1_written = {p: p.stat().st_mtime_ns for p in stage1_final.rglob('*')}

    rerun = run(arguments, tmp_path)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    said = re.findall(r'train: resumed from iteration (\d+) \(checkpoint \S*/(stage\d)/checkpoints/\d+\)', rerun.stderr)
    assert said == [('2', 'stage1'), ('2', 'stage2')], rerun.stderr[-3000:]  # stage 3 starts fresh
    assert {p: p.stat().st_mtime_ns for p in stage1_final.rglob('*')} == stage1_written  # not trained again
    assert [steps(workdir, stage) for stage in STEPS] == [[1, 2], [1, 2, 3], [1, 2]]
    assert f'(init_from {workdir / "stage2" / "checkpoints"})' in rerun.stderr

    # Each later stage's first checkpoint is one Adam step from the final weights of the stage before. A stage
    # started afresh would be about 2e-2 away (stage 1's two iterations at lr 1e-2), not within 3.2e-4.
    stage1, stage2 = parameters(workdir, 'stage1', 2), parameters(workdir, 'stage2', 1)
    assert assert_one_adam_step_from(stage1, stage2, BASE_LR) == len(stage2)
    stage2_final, stage3 = parameters(workdir, 'stage2', 3), parameters(workdir, 'stage3', 1)
    taken = assert_one_adam_step_from(stage2_final, stage3, BASE_LR)
    new_stages = {key.split('.')[1] for key in set(stage3) - set(stage2_final)}
    assert taken == len(stage2_final) and new_stages == {'1', '2'}  # stage 3 adds two refinement stages
    stage1_first = parameters(workdir, 'stage1', 1)
    moved = max(np.abs(stage1[key] - stage1_first[key]).max() for key in stage1)
    assert moved > 10 * MAX_LR_MULTIPLIER * BASE_LR  # so the bound tells a start from stage 1 from a fresh one
