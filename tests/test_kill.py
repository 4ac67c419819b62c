"""``kill -9`` at several moments of ``lwop train`` on the COCO mini images, then the same command again:
each time the finished run is bit-identical to one that was never interrupted.

The kill is a real SIGKILL that the process sends itself at a chosen moment around the iteration-4
checkpoint (a wrapper around ``save_checkpoint``, installed by a small driver before the command runs):
before the save starts, while the asynchronous save is still writing, and after it is complete.
"""

import os
import signal
import subprocess
import sys
import textwrap

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

pytest.importorskip('tensorflow')

KILL_STEP = 4
STEPS = 6

DRIVER = textwrap.dedent(
    """
    import os, signal, sys
    from lwop_jax.training import loop

    moment, kill_step = sys.argv[1], int(sys.argv[2])
    save_checkpoint = loop.save_checkpoint

    def save_or_die(manager, graphdef, state, data_position, config):
        step = data_position['batches_consumed'] // config.batches_per_iter
        if step == kill_step and moment == 'before-save':
            os.kill(os.getpid(), signal.SIGKILL)
        save_checkpoint(manager, graphdef, state, data_position, config)
        if step == kill_step and moment == 'during-async-save':
            os.kill(os.getpid(), signal.SIGKILL)  # save() has returned; its thread is still writing
        if step == kill_step and moment == 'after-save':
            manager.wait_until_finished()
            os.kill(os.getpid(), signal.SIGKILL)

    loop.save_checkpoint = save_or_die
    from lwop_jax.cli.main import main

    sys.exit(main(sys.argv[3:]))
    """
)


def train_arguments(coco_mini_dir, workdir) -> list[str]:
    return [
        'train', '--config', 'tiny', '--workdir', str(workdir),
        f'--config.train_labels={coco_mini_dir / "person_keypoints_val2017_mini.json"}',
        f'--config.train_images={coco_mini_dir / "val2017"}',
        '--config.crop_size=64', '--config.batch_size=2', '--config.num_refinement_stages=0',
        '--config.backbone_width=0.5', '--config.backbone_depth=7', '--config.num_channels=32',
        '--config.val_after=0', '--config.image_summary_after=0', '--config.checkpoint_after=2',
        '--config.async_checkpointing=True', '--config.num_parallel_calls=1', f'--config.num_train_steps={STEPS}',
    ]  # fmt: skip


def start(arguments: list[str], moment: str, cwd) -> subprocess.Popen:
    command = [sys.executable, '-c', DRIVER, moment, str(KILL_STEP), *arguments]
    env = dict(os.environ, JAX_PLATFORMS='cpu')
    return subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait(process: subprocess.Popen) -> int:
    _, stderr = process.communicate(timeout=300)
    if process.returncode not in (0, -signal.SIGKILL):
        raise AssertionError(stderr[-3000:])
    return process.returncode


def finished_steps(workdir) -> list[int]:
    return sorted(int(p.name) for p in (workdir / 'checkpoints').iterdir() if p.name.isdigit())


def saved_arrays(workdir, step: int) -> dict[str, np.ndarray]:
    """Every array of a training checkpoint (weights, BatchNorm statistics, iteration, Adam state), on the host."""
    directory = workdir / 'checkpoints' / str(step)
    items = ('model', 'train_state')
    restore = {}
    for item in items:
        tree = ocp.PyTreeCheckpointHandler().metadata(directory / item)
        arguments = jax.tree.map(lambda _: ocp.RestoreArgs(restore_type=np.ndarray), getattr(tree, 'tree', tree))
        restore[item] = ocp.args.PyTreeRestore(restore_args=arguments)
    with ocp.Checkpointer(ocp.CompositeCheckpointHandler()) as checkpointer:
        restored = checkpointer.restore(directory, ocp.args.Composite(**restore))
    flat = {}
    for item in items:
        for path, leaf in jax.tree_util.tree_flatten_with_path(restored[item])[0]:
            flat[f'{item}{jax.tree_util.keystr(path)}'] = np.asarray(leaf)
    return flat


@pytest.mark.slow
def test_kill_9_at_each_moment_then_rerun_is_bit_identical(coco_mini_dir, tmp_path):
    moments = ('before-save', 'during-async-save', 'after-save')
    # The uninterrupted run and the killed ones at once (2 cores: two processes at a time).
    reference = start(train_arguments(coco_mini_dir, tmp_path / 'uninterrupted'), 'never', tmp_path)
    killed = {m: start(train_arguments(coco_mini_dir, tmp_path / m), m, tmp_path) for m in moments}
    assert wait(reference) == 0
    want = saved_arrays(tmp_path / 'uninterrupted', STEPS)
    # What each kill left of the iteration-4 checkpoint: nothing, an unfinished temporary folder, or the
    # checkpoint. (Whether the asynchronous save of iteration 2 had finished depends on the machine's pace.)
    for moment, process in killed.items():
        assert wait(process) == -signal.SIGKILL, moment
        checkpoints = tmp_path / moment / 'checkpoints'
        unfinished = list(checkpoints.glob(f'{KILL_STEP}.orbax-checkpoint-tmp*'))
        assert (KILL_STEP in finished_steps(tmp_path / moment)) == (moment == 'after-save'), moment
        assert bool(unfinished) == (moment == 'during-async-save'), (moment, unfinished)
    resumed = {m: start(train_arguments(coco_mini_dir, tmp_path / m), 'never', tmp_path) for m in moments}
    for moment, process in resumed.items():
        assert wait(process) == 0, moment
        got = saved_arrays(tmp_path / moment, STEPS)
        assert got.keys() == want.keys()
        different = [key for key in want if not np.array_equal(got[key], want[key])]
        assert not different, (moment, different[:5])
