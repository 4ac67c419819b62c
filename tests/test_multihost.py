"""Multi-host training as users start it: ``lwop train`` in two processes on localhost (CPU, one device
each, gloo collectives, an explicit coordinator), against one process with two devices and the same global
batch; then the two-process run is stopped and resumed. And the starts that fail: a bad rank, a coordinator
that nobody answers at, a process that never joins."""

import os
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

from lwop_jax.training.checkpointing import checkpoint_arrays

pytest.importorskip('tensorflow')

ITERATION_KEY = "train_state['step']"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(('localhost', 0))
        return probe.getsockname()[1]


def train_command(coco_mini_dir, workdir, steps: int, *extra: str) -> list[str]:
    return [
        sys.executable, '-m', 'lwop_jax', 'train', '--config', 'tiny', '--workdir', str(workdir),
        f'--config.train_labels={coco_mini_dir / "person_keypoints_val2017_mini.json"}',
        f'--config.train_images={coco_mini_dir / "val2017"}',
        '--config.crop_size=64', '--config.batch_size=4', '--config.num_refinement_stages=0',
        '--config.backbone_width=0.5', '--config.backbone_depth=7', '--config.num_channels=32',
        '--config.val_after=0', '--config.image_summary_after=0', '--config.checkpoint_after=2',
        '--config.log_after=1', '--config.num_parallel_calls=1', f'--config.num_train_steps={steps}',
        *extra,
    ]  # fmt: skip


def start(command: list[str], devices: int, cwd) -> subprocess.Popen:
    env = dict(
        os.environ,
        JAX_PLATFORMS='cpu',
        XLA_FLAGS=f'--xla_force_host_platform_device_count={devices}',
        COLUMNS='80',
    )
    return subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(process: subprocess.Popen) -> str:
    stdout, stderr = process.communicate(timeout=240)
    assert process.returncode == 0, stderr[-3000:]
    # gloo's C++ code prints one line per process when it connects; it cannot be silenced from Python.
    assert all(line.startswith('[Gloo] Rank ') for line in stdout.splitlines()), stdout
    return stderr


def two_processes(coco_mini_dir, workdir, steps: int, cwd) -> list[subprocess.Popen]:
    address = f'localhost:{free_port()}'
    return [
        start(
            train_command(
                coco_mini_dir,
                workdir,
                steps,
                f'--config.coordinator_address={address}',
                '--config.num_processes=2',
                f'--config.process_id={rank}',
            ),
            devices=1,
            cwd=cwd,
        )
        for rank in range(2)
    ]


def assert_bit_identical(got_workdir, want_workdir, step: int):
    """Two processes reduce gradients and BatchNorm statistics through gloo, one process through XLA's
    in-process all-reduce: the same sums of two numbers (one per device), and a sum of two is the same in
    either order. So every array is asserted equal: weights, BatchNorm statistics, iteration, Adam's state."""
    got = checkpoint_arrays(got_workdir / 'checkpoints' / str(step))
    want = checkpoint_arrays(want_workdir / 'checkpoints' / str(step))
    assert got.keys() == want.keys()
    assert int(got[ITERATION_KEY]) == step
    assert sum(key.startswith("train_state['opt_state']") for key in want) > 0
    different = [key for key in want if not np.array_equal(got[key], want[key])]
    assert not different, different[:5]


def event_files(workdir) -> list:
    return sorted((workdir / 'tensorboard').glob('events.out.tfevents.*'))


@pytest.mark.slow
def test_two_processes_train_and_resume_like_one_process_with_two_devices(coco_mini_dir, tmp_path):
    single, multi = tmp_path / 'single', tmp_path / 'multi'
    reference = start(train_command(coco_mini_dir, single, 4), devices=2, cwd=tmp_path)
    first = two_processes(coco_mini_dir, multi, 2, tmp_path)
    finish(reference)
    logs = [finish(process) for process in first]
    # Only process 0 shows progress and writes TensorBoard; the checkpoint is written by both together.
    assert 'train:' in logs[0] and logs[1].strip() == '', logs[1][-2000:]
    assert len(event_files(multi)) == 1
    assert 'resumed from' not in logs[0]
    assert_bit_identical(multi, single, 2)

    resumed = two_processes(coco_mini_dir, multi, 4, tmp_path)
    logs = [finish(process) for process in resumed]
    assert 'train:' in logs[0] and logs[1].strip() == ''
    # It continued from iteration 2 (a rerun that started over would end identical too: training is deterministic).
    assert f'train: resumed from iteration 2 (checkpoint {multi / "checkpoints" / "2"})' in logs[0], logs[0][-2000:]
    assert len(event_files(multi)) == 2
    assert sorted(p.name for p in (multi / 'checkpoints').iterdir()) == ['2', '4']
    assert_bit_identical(multi, single, 4)


def test_a_rank_outside_the_process_count_is_one_line(tmp_path):
    """process_id 5 of 2 processes: refused at once, before waiting for any coordinator."""
    command = train_command(
        tmp_path, tmp_path / 'w', 2, '--config.coordinator_address=localhost:1', '--config.num_processes=2',
        '--config.process_id=5',
    )  # fmt: skip
    result = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == ['error: process_id 5: must be below num_processes (2)']
    assert not (tmp_path / 'w').exists()


def test_a_silent_coordinator_and_a_missing_process_end_in_one_line_after_the_timeout(tmp_path):
    """Real closed ports on loopback. Process 1 finds nobody at its coordinator's address; process 0 (another
    address) starts the coordinator but no process joins it. Each gives up after coordinator_timeout_s (3 s)
    with one line naming the address and the time waited, exit status 1 (JAX alone waits 300 s, then aborts
    from C++). No data is read (the label paths do not exist) and nothing is written."""
    timeout_s = 3
    silent, lonely = (f'localhost:{free_port()}' for _ in range(2))  # bound, then closed: nothing listens there

    def rank(process_id: int, address: str) -> subprocess.Popen:
        command = train_command(
            tmp_path, tmp_path / f'w{process_id}', 2, f'--config.coordinator_address={address}',
            '--config.num_processes=2', f'--config.process_id={process_id}',
            f'--config.coordinator_timeout_s={timeout_s}',
        )  # fmt: skip
        return subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    started = time.monotonic()
    processes = [rank(1, silent), rank(0, lonely)]
    outcomes = [process.communicate(timeout=120)[1] for process in processes]
    assert time.monotonic() - started >= timeout_s
    for process, stderr in zip(processes, outcomes):
        assert process.returncode == 1, stderr[-3000:]
    assert outcomes[0].strip().splitlines() == [
        f'error: {silent}: no multi-host coordinator answered within {timeout_s} s (coordinator_timeout_s): '
        'is process 0 running there?'
    ]
    assert outcomes[1].strip().splitlines() == [
        f'error: {lonely}: multi-host start: not all 2 processes joined within {timeout_s} s (coordinator_timeout_s)'
    ]
    assert not (tmp_path / 'w0').exists() and not (tmp_path / 'w1').exists()
