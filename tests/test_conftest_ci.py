"""In CI (CI=true) a missing ../shared fails the run with one line instead of skipping the parity, int8, kill and
multi-host tests; elsewhere those tests skip and say why. Checked with a real pytest run of a tiny test file that
loads this folder's conftest, in a subprocess, with LWOP_SHARED pointing at a folder that does not exist."""

import os
import pathlib
import subprocess
import sys

import pytest

TESTS = pathlib.Path(__file__).resolve().parent

TINY_TESTS = """
def test_needs_the_reference(reference_dir):
    pass


def test_needs_the_mini_images(coco_mini_dir):
    pass


def test_needs_nothing():
    pass
"""


def run_pytest(folder: pathlib.Path, ci: str | None) -> subprocess.CompletedProcess:
    (folder / 'test_tiny.py').write_text(TINY_TESTS)
    env = {k: v for k, v in os.environ.items() if k != 'CI'}
    env |= {
        'LWOP_SHARED': str(folder / 'missing'),
        'PYTHONPATH': os.pathsep.join([str(TESTS), env.get('PYTHONPATH', '')]),
    }
    if ci is not None:
        env['CI'] = ci
    command = [
        sys.executable,
        '-m',
        'pytest',
        '-q',
        '-rs',
        '-p',
        'conftest',
        '-p',
        'no:cacheprovider',
        '-p',
        'no:warnings',
        'test_tiny.py',
    ]
    return subprocess.run(command, cwd=folder, env=env, capture_output=True, text=True, timeout=120)


def test_without_ci_a_missing_shared_folder_skips_and_says_why(tmp_path):
    done = run_pytest(tmp_path, ci=None)
    assert done.returncode == 0, done.stdout + done.stderr
    assert '1 passed, 2 skipped' in done.stdout
    assert done.stdout.count(f'{tmp_path / "missing"}') >= 2 and 'LWOP_SHARED' in done.stdout


def test_in_ci_a_missing_shared_folder_fails_the_run_with_one_line(tmp_path):
    done = run_pytest(tmp_path, ci='true')
    assert done.returncode == pytest.ExitCode.USAGE_ERROR, done.stdout + done.stderr  # not 0: the run fails
    reference = tmp_path / 'missing' / 'reference'
    expected = f'ERROR: CI=true and {reference} is missing: 2 selected tests need the reference fixtures'
    assert [line for line in done.stderr.splitlines() if line.startswith('ERROR')] == [
        f'{expected} of the original implementation, and CI must run them, not skip them '
        '(point LWOP_SHARED at the shared folder)'
    ], done.stderr
    assert 'no tests ran' in done.stdout and 'Traceback' not in done.stdout + done.stderr  # stopped before any test


def test_ci_false_still_skips(tmp_path):
    done = run_pytest(tmp_path, ci='false')
    assert done.returncode == 0 and '1 passed, 2 skipped' in done.stdout, done.stdout + done.stderr
