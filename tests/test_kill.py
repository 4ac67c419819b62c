"""``kill -9`` at several moments of ``lwop train`` on the COCO mini images, then the same command again:
each rerun says it resumed from the newest checkpoint the kill left complete, and the finished run is
bit-identical to one that was never interrupted.

The kill is a real SIGKILL that the process sends itself at a chosen moment around the iteration-4
checkpoint (a wrapper around ``save_checkpoint``, installed by a small driver before the command runs):
before the save starts (the iteration-2 save complete), while the asynchronous save is still writing, and
after it is complete. benchmarks/soak_kill.py kills from outside at random moments.
"""

import os
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from lwop_jax.training.checkpointing import checkpoint_arrays

pytest.importorskip('tensorflow')

KILL_STEP = 4
STEPS = 6
# The newest complete checkpoint each kill leaves, hence the iteration its rerun must resume from: save(4)
# first waits for the asynchronous save of 2, so only 'after-save' has 4.
RESUMES_FROM = {'before-save': 2, 'during-async-save': 2, 'after-save': 4}

DRIVER = textwrap.dedent(
    """
    import os, signal, sys
    from lwop_jax.training import loop

    moment, kill_step = sys.argv[1], int(sys.argv[2])
    save_checkpoint = loop.save_checkpoint

    def save_or_die(manager, graphdef, state, data_position, config):
        step = data_position['batches_consumed'] // config.batches_per_iter
        if step == kill_step and moment == 'before-save':
            manager.wait_until_finished()  # the save of iteration 2, still being written at the machine's pace
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


def wait(process: subprocess.Popen) -> tuple[int, str]:
    _, stderr = process.communicate(timeout=300)
    if process.returncode not in (0, -signal.SIGKILL):
        raise AssertionError(stderr[-3000:])
    return process.returncode, stderr


def finished_steps(workdir) -> list[int]:
    return sorted(int(p.name) for p in (workdir / 'checkpoints').iterdir() if p.name.isdigit())


@pytest.mark.slow
def test_kill_9_at_each_moment_then_rerun_is_bit_identical(coco_mini_dir, tmp_path):
    moments = ('before-save', 'during-async-save', 'after-save')
    # The uninterrupted run and the killed ones at once (2 cores: two processes at a time).
    reference = start(train_arguments(coco_mini_dir, tmp_path / 'uninterrupted'), 'never', tmp_path)
    killed = {m: start(train_arguments(coco_mini_dir, tmp_path / m), m, tmp_path) for m in moments}
    assert wait(reference)[0] == 0
    want = checkpoint_arrays(tmp_path / 'uninterrupted' / 'checkpoints' / str(STEPS))
    # What each kill left of the iteration-4 checkpoint: nothing, an unfinished temporary folder, or the checkpoint.
    for moment, process in killed.items():
        assert wait(process)[0] == -signal.SIGKILL, moment
        checkpoints = tmp_path / moment / 'checkpoints'
        unfinished = list(checkpoints.glob(f'{KILL_STEP}.orbax-checkpoint-tmp*'))
        assert max(finished_steps(tmp_path / moment)) == RESUMES_FROM[moment], moment
        assert bool(unfinished) == (moment == 'during-async-save'), (moment, unfinished)
    resumed = {m: start(train_arguments(coco_mini_dir, tmp_path / m), 'never', tmp_path) for m in moments}
    for moment, process in resumed.items():
        returncode, stderr = wait(process)
        assert returncode == 0, moment
        # It continued (a rerun that started over would end identical too: training is deterministic).
        step = RESUMES_FROM[moment]
        line = f'train: resumed from iteration {step} (checkpoint {tmp_path / moment / "checkpoints" / str(step)})'
        assert line in stderr.splitlines(), (moment, stderr[-2000:])
        got = checkpoint_arrays(tmp_path / moment / 'checkpoints' / str(STEPS))
        assert got.keys() == want.keys() and int(got["train_state['step']"]) == STEPS
        different = [key for key in want if not np.array_equal(got[key], want[key])]
        assert not different, (moment, different[:5])
