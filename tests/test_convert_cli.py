"""`lwop convert` as users run it: an ONNX file or an IR alone from a .pth (no orbax folder asked for), and an
int8 conversion of a .pth that prints no fork warning."""

import os
import subprocess
import sys

import numpy as np
import openvino as ov
import pytest

from lwop_jax.checkpoints import metadata
from lwop_jax.cli import main as lwop
from lwop_jax.inference import backends

SMALL = np.random.default_rng(0).normal(0, 0.25, (1, 64, 96, 3)).astype(np.float32)  # a small network input


@pytest.mark.slow
# In-process, the OpenVINO conversion forks with JAX loaded: the pytest process imported openvino at collection,
# and its telemetry event on import fixed multiprocessing's start method at fork before any command ran (a
# start method already in use is left alone). `lwop` itself starts processes from a fork server (test below).
@pytest.mark.filterwarnings('ignore:os.fork')
def test_onnx_or_ir_alone_from_a_pth(reference_dir, overfit_onnx, tmp_path):
    """Only what was asked is written. Both come from the same export as ``overfit_onnx`` (the same
    checkpoint, exporter and settings), so each runtime gives the same outputs bit for bit."""
    pth = reference_dir / 'lwop_overfit_coco4.pth'
    assert lwop.main(['convert', str(pth), '--onnx', str(tmp_path / 'only.onnx')]) == 0
    assert lwop.main(['convert', str(pth), '--openvino', str(tmp_path / 'ir')]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ['ir', 'only.onnx']  # no orbax folder, no leftovers
    assert sorted(p.name for p in (tmp_path / 'ir').iterdir()) == ['lwop.bin', 'lwop.xml']
    assert metadata.openvino_precision(ov.Core().read_model(str(tmp_path / 'ir' / 'lwop.xml'))) == 'fp32'
    for exported, reference, runtime in [
        (tmp_path / 'only.onnx', overfit_onnx, 'onnxruntime'),
        (tmp_path / 'ir' / 'lwop.xml', overfit_onnx, 'openvino'),
    ]:
        ours = backends.load_backend(exported, runtime, threads=2)(SMALL)
        theirs = backends.load_backend(reference, runtime, threads=2)(SMALL)
        for a, b in zip(ours, theirs):
            np.testing.assert_array_equal(a, b)


def telemetry_env(home):
    """The environment of a user whose OpenVINO and NNCF send telemetry, with nothing leaving the machine.

    Telemetry is on by default (no opt-out file in the fresh ``home``) unless a CI variable is set, so those
    are removed; its requests go through a proxy on a closed loopback port, where they fail at once.
    """
    env = {k: v for k, v in os.environ.items() if k.upper() not in {'CI', 'TF_BUILD', 'JENKINS_URL', 'NO_PROXY'}}
    env = {k: v for k, v in env.items() if not k.startswith('NNCF_')}
    proxy = 'http://127.0.0.1:9'  # the discard port, closed on a normal machine: refused at once
    env.update(HOME=str(home), LWOP_JAX_CACHE=str(home / 'cache'), HTTPS_PROXY=proxy, https_proxy=proxy)
    env.update(HTTP_PROXY=proxy, http_proxy=proxy)
    return env


@pytest.mark.slow
def test_int8_conversion_prints_no_fork_warning(reference_dir, coco_mini_dir, tmp_path):
    """Who forked: OpenVINO's telemetry (openvino_telemetry's GA4 backend) sends each event (on ``import
    openvino``, on each model conversion, on NNCF's quantization) from a ``multiprocessing.Process`` of the
    default start method: a fork on Linux up to Python 3.13. JAX, loaded to export the .pth, warns on every
    fork of its multithreaded process. ``lwop`` now starts processes from a fork server
    (common.start_processes_without_fork).

    The control: in the same environment a plain interpreter that initialises JAX and then imports
    openvino prints the warning, so the command's silence is the fix, not telemetry being off."""
    control_home, home = tmp_path / 'control_home', tmp_path / 'home'
    control_home.mkdir()
    home.mkdir()
    control = 'import jax\njax.numpy.zeros(1).block_until_ready()\nimport openvino\n'
    result = subprocess.run(
        [sys.executable, '-c', control], env=telemetry_env(control_home), capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0 and 'os.fork() was called' in result.stderr, result.stderr[-2000:]

    out = tmp_path / 'out'
    argv = ['convert', str(reference_dir / 'lwop_overfit_coco4.pth'), '--output', str(out / 'd')]
    argv += ['--onnx', str(out / 'q.onnx'), '--openvino', str(out / 'ir'), '--precision', 'int8']
    argv += ['--calibration-images', str(coco_mini_dir / 'val2017'), '--max-calibration-images', '2', '--threads', '2']
    result = subprocess.run(
        [sys.executable, '-m', 'lwop_jax', *argv],
        env=telemetry_env(home),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert 'ONNX (int8)' in result.stdout and 'OpenVINO IR (int8)' in result.stdout
    assert 'os.fork()' not in result.stderr and 'Warning' not in result.stderr, result.stderr[-3000:]
    assert (home / 'intel' / 'openvino_ga_cid').exists()  # telemetry was on: it wrote its client id
