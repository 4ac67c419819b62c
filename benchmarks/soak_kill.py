"""kill -9 soak: ``lwop train`` killed at random moments, rerun to the end, compared exactly with a run that was
never interrupted.

  nice python benchmarks/soak_kill.py --trials 20 --seed 0     # about 30 s of 2 cores per trial
  python benchmarks/soak_kill.py --smoke                       # 2 trials, 4 iterations (the tests run it)

The run is the tiny one of tests/test_kill.py: the 4 COCO mini images (../shared, or $LWOP_SHARED), crops of 64,
batch 2, a half-width backbone cut after conv4_2, no refinement stage, an asynchronous checkpoint every 2
iterations. Each trial starts the command, sends it SIGKILL from outside at a moment drawn from --seed, then
runs the same command again to the end. The moments cycle through three kinds, each with a random part:

- ``writing``: as soon as the temporary folder of a randomly chosen checkpoint appears (orbax's
  ``<step>.orbax-checkpoint-tmp-*``, present until the asynchronous save completes), plus 0-20 ms;
- ``log``: after the log line of a random iteration (the step done, its checkpoint not yet started), plus 0-300 ms;
- ``time``: a random time within the uninterrupted run's training (from its first iteration to its exit).

For each trial it reports what the kill left (complete checkpoints, unfinished temporary folders), the
iteration the rerun says it resumed from (its ``train: resumed from iteration N`` line; none: it started
over) against the newest complete checkpoint, and whether the final checkpoint is bit-identical to the
uninterrupted run's: every array of weights, BatchNorm statistics, iteration and Adam state, compared with
``np.array_equal``. Exit status 1 when any trial differs or resumed from elsewhere. --json writes the records.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import pathlib
import random
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
SHARED = pathlib.Path(os.environ.get('LWOP_SHARED', ROOT.parent / 'shared'))
KINDS = ('writing', 'log', 'time')
CHECKPOINT_AFTER = 2
POLL_S = 0.001
ITERATION_LINE = re.compile(r'iteration (\d+): loss')
RESUME_LINE = re.compile(r'train: resumed from iteration (\d+) ')


def train_command(coco_mini: pathlib.Path, workdir: pathlib.Path, steps: int) -> list[str]:
    """``lwop train`` with tests/test_kill.py's settings; -v for the per-iteration log lines the kills wait for."""
    return [
        sys.executable, '-m', 'lwop_jax', 'train', '-v', '--config', 'tiny', '--workdir', str(workdir),
        f'--config.train_labels={coco_mini / "person_keypoints_val2017_mini.json"}',
        f'--config.train_images={coco_mini / "val2017"}',
        '--config.crop_size=64', '--config.batch_size=2', '--config.num_refinement_stages=0',
        '--config.backbone_width=0.5', '--config.backbone_depth=7', '--config.num_channels=32',
        '--config.val_after=0', '--config.image_summary_after=0', f'--config.checkpoint_after={CHECKPOINT_AFTER}',
        '--config.log_after=1', '--config.async_checkpointing=True', '--config.num_parallel_calls=1',
        f'--config.num_train_steps={steps}',
    ]  # fmt: skip


class Run:
    """One ``lwop train`` process, its stderr collected by a thread (the log lines that trigger kills)."""

    def __init__(self, command: list[str], cwd: pathlib.Path):
        env = dict(os.environ, JAX_PLATFORMS='cpu', COLUMNS='80')
        self.started = time.monotonic()
        self.process = subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self.chunks: list[bytes] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        for chunk in iter(lambda: os.read(self.process.stderr.fileno(), 65536), b''):
            self.chunks.append(chunk)

    def text(self) -> str:
        return b''.join(self.chunks).decode(errors='replace')

    def iterations_logged(self) -> list[int]:
        return [int(n) for n in ITERATION_LINE.findall(self.text())]

    def finish(self) -> int:
        self.process.wait()
        self.reader.join()
        return self.process.returncode


def complete_checkpoints(workdir: pathlib.Path) -> list[int]:
    folder = workdir / 'checkpoints'
    return sorted(int(p.name) for p in folder.iterdir() if p.name.isdigit()) if folder.is_dir() else []


def unfinished_checkpoints(workdir: pathlib.Path) -> list[str]:
    folder = workdir / 'checkpoints'
    return sorted(p.name for p in folder.glob('*.orbax-checkpoint-tmp*')) if folder.is_dir() else []


def draw_moments(trials: int, steps: int, seed: int, training_s: float) -> list[dict]:
    rng = random.Random(seed)
    moments = []
    for trial in range(trials):
        kind = KINDS[trial % len(KINDS)]
        if kind == 'writing':
            moment = {'checkpoint': rng.randrange(CHECKPOINT_AFTER, steps + 1, CHECKPOINT_AFTER)}
            moment['delay_s'] = rng.uniform(0, 0.02)
        elif kind == 'log':
            moment = {'iteration': rng.randrange(1, steps), 'delay_s': rng.uniform(0, 0.3)}
        else:
            moment = {'delay_s': rng.uniform(0, training_s)}
        moments.append({'kind': kind, **moment})
    return moments


def describe(moment: dict) -> str:
    delay = f'+{1000 * moment["delay_s"]:.0f} ms'
    if moment['kind'] == 'writing':
        return f'writing checkpoint {moment["checkpoint"]} {delay}'
    if moment['kind'] == 'log':
        return f'after iteration {moment["iteration"]} {delay}'
    return f'training {delay}'


def triggered(moment: dict, run: Run, workdir: pathlib.Path) -> bool:
    """Whether the event the moment waits for has happened (its delay is added after)."""
    if moment['kind'] == 'writing':
        return any(name.startswith(f'{moment["checkpoint"]}.') for name in unfinished_checkpoints(workdir))
    if moment['kind'] == 'log':
        return moment['iteration'] in run.iterations_logged()
    return 1 in run.iterations_logged()


def kill_at(moment: dict, command: list[str], workdir: pathlib.Path) -> dict:
    """Starts the command and sends SIGKILL at the moment; what the kill left behind."""
    run = Run(command, workdir.parent)
    while run.process.poll() is None and not triggered(moment, run, workdir):
        time.sleep(POLL_S)
    if run.process.poll() is None:
        time.sleep(moment['delay_s'])
        run.process.send_signal(signal.SIGKILL)
    returncode = run.finish()
    logged = run.iterations_logged()
    return {
        'killed': returncode == -signal.SIGKILL,
        'returncode': returncode,
        'last_iteration_logged': max(logged) if logged else 0,
        'complete': complete_checkpoints(workdir),
        'unfinished': unfinished_checkpoints(workdir),
    }


def rerun(command: list[str], workdir: pathlib.Path) -> dict:
    run = Run(command, workdir.parent)
    returncode = run.finish()
    if returncode != 0:
        raise SystemExit(f'error: the rerun in {workdir} failed (exit status {returncode}):\n{run.text()[-3000:]}')
    resumed = RESUME_LINE.findall(run.text())
    return {'resumed_from': int(resumed[0]) if resumed else 0}


def final_arrays(workdir: pathlib.Path, steps: int) -> dict[str, np.ndarray]:
    from lwop_jax.training.checkpointing import checkpoint_arrays  # jax and orbax: after the children started

    return checkpoint_arrays(workdir / 'checkpoints' / str(steps))


def identical(got: dict, want: dict) -> bool:
    return got.keys() == want.keys() and all(np.array_equal(got[key], want[key]) for key in want)


def uninterrupted(coco_mini: pathlib.Path, folder: pathlib.Path, steps: int) -> tuple[dict, float]:
    """The reference run's final arrays, and how long it trained (first iteration's log line to exit)."""
    workdir = folder / 'uninterrupted'
    run = Run(train_command(coco_mini, workdir, steps), folder)
    first_iteration = None
    while run.process.poll() is None:
        if first_iteration is None and 1 in run.iterations_logged():
            first_iteration = time.monotonic()
        time.sleep(POLL_S)
    if run.finish() != 0:
        raise SystemExit(f'error: the uninterrupted run failed:\n{run.text()[-3000:]}')
    training_s = time.monotonic() - (first_iteration or run.started)
    return final_arrays(workdir, steps), training_s


def trial(index: int, moment: dict, coco_mini: pathlib.Path, folder: pathlib.Path, steps: int, want: dict) -> dict:
    workdir = folder / f'trial-{index:02d}'
    command = train_command(coco_mini, workdir, steps)
    record = {'trial': index, 'moment': describe(moment), **moment, **kill_at(moment, command, workdir)}
    record['expected_resume'] = max(record['complete'], default=0)
    record.update(rerun(command, workdir))
    record['identical'] = identical(final_arrays(workdir, steps), want)
    return record


def print_row(record: dict) -> None:
    left = ', '.join(map(str, record['complete'])) or 'none'
    if record['unfinished']:
        left += f' + unfinished {", ".join(name.split(".")[0] for name in record["unfinished"])}'
    killed = f'after iteration {record["last_iteration_logged"]}' if record['killed'] else 'finished first'
    print(
        f'{record["trial"]:>5}  {record["moment"]:<28} {killed:<22} {left:<28} '
        f'{record["resumed_from"]:>7}  {"yes" if record["identical"] else "NO"}',
        flush=True,
    )


def summary(records: list[dict], wall_s: float) -> list[str]:
    resumed = collections.Counter(r['resumed_from'] for r in records)
    as_expected = sum(r['resumed_from'] == r['expected_resume'] for r in records)
    return [
        f'{sum(r["identical"] for r in records)}/{len(records)} bit-identical to the uninterrupted run '
        '(weights, BatchNorm statistics, iteration, Adam state)',
        f'killed: {sum(r["killed"] for r in records)}/{len(records)}; with a checkpoint being written (its '
        f'temporary folder left behind): {sum(bool(r["unfinished"]) for r in records)}',
        f'resumed from the newest complete checkpoint: {as_expected}/{len(records)}; resumed from iteration: '
        + ', '.join(f'{step} x{count}' for step, count in sorted(resumed.items())),
        f'wall time {wall_s / 60:.1f} min',
    ]


def parse_arguments(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--trials', type=int, default=20)
    parser.add_argument('--steps', type=int, default=8, help='iterations of each run (a checkpoint every 2)')
    parser.add_argument('--seed', type=int, default=0, help='draws the kill moments')
    parser.add_argument('--smoke', action='store_true', help='2 trials of 4 iterations')
    parser.add_argument('--coco-mini', type=pathlib.Path, default=SHARED / 'data' / 'coco_val_mini')
    parser.add_argument('--workdir', type=pathlib.Path, help='keep the runs here (default: a temporary folder)')
    parser.add_argument('--json', type=pathlib.Path, help='write the records and the summary here')
    args = parser.parse_args(argv)
    if args.smoke:
        args.trials, args.steps = 2, 4
    return args


def main(argv=None) -> int:
    args = parse_arguments(argv)
    if not (args.coco_mini / 'person_keypoints_val2017_mini.json').is_file():
        raise SystemExit(f'error: {args.coco_mini}: the COCO mini images are not there (set --coco-mini)')
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix='soak_kill_') as scratch:
        folder = (args.workdir or pathlib.Path(scratch)).absolute()
        folder.mkdir(parents=True, exist_ok=True)
        want, training_s = uninterrupted(args.coco_mini, folder, args.steps)
        print(f'uninterrupted run: {args.steps} iterations, trained for {training_s:.1f} s', flush=True)
        print(f'{"trial":>5}  {"kill moment":<28} {"killed":<22} {"checkpoints left":<28} {"resumed":>7}  identical')
        records = []
        for index, moment in enumerate(draw_moments(args.trials, args.steps, args.seed, training_s), 1):
            records.append(trial(index, moment, args.coco_mini, folder, args.steps, want))
            print_row(records[-1])
    lines = summary(records, time.monotonic() - started)
    print('\n'.join(lines))
    if args.json:
        args.json.write_text(json.dumps({'seed': args.seed, 'steps': args.steps, 'records': records, 'summary': lines}))
    failed = [r for r in records if not r['identical'] or r['resumed_from'] != r['expected_resume']]
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main())
