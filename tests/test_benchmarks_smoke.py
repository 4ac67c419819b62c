"""The benchmarks behind README figures, each run with ``--smoke`` (tiny sizes, one round) in a subprocess, so that
they cannot rot: each must finish and print its figures. Nothing is asserted about speed (benchmarks/ measure it
against baselines of the same run; here the figures of a loaded CI machine mean nothing)."""

import math
import os
import pathlib
import re
import subprocess
import sys

import pytest

BENCHMARKS = pathlib.Path(__file__).resolve().parents[1] / 'benchmarks'
RATIO = r'([0-9]+\.[0-9]+)x'  # '1.04x', as the benchmarks print ratios to their baseline


def run_smoke(script: str, *arguments, cwd) -> str:
    """``python benchmarks/<script> --smoke ...``: its stdout, after asserting it exited 0."""
    done = subprocess.run(
        [sys.executable, str(BENCHMARKS / script), '--smoke', *map(str, arguments)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=600,
        env=dict(os.environ, JAX_PLATFORMS='cpu'),  # LWOP_JAX_CACHE: the session's (conftest), conversions reused
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    return done.stdout


def ratios(lines: list[str]) -> list[float]:
    values = [float(value) for line in lines for value in re.findall(RATIO, line)]
    assert all(math.isfinite(value) and value > 0 for value in values), values
    return values


@pytest.mark.slow
def test_bench_precision(reference_dir, overfit_onnx, tmp_path):
    out = run_smoke('bench_precision.py', '--shared', reference_dir.parent, '--workdir', tmp_path, cwd=tmp_path)
    lines = out.splitlines()
    # Six estimators: their frame-time ratios to fp32 ONNX Runtime over the images, then AP and agreement.
    together = [line for line in lines if re.match(r'all \d+ ', line)]
    assert len(together) == 1 and len(ratios(together)) == 6 and ratios(together)[0] == 1.0, out
    scored = [line for line in lines if re.search(r'AP [0-9.]+ +AP50 [0-9.]+ +agreement [0-9.]+', line)]
    assert len(scored) == 6, out


@pytest.mark.slow
def test_bench_video(reference_dir, overfit_onnx, tmp_path):
    out = run_smoke('bench_video.py', '--shared', reference_dir.parent, '--model', overfit_onnx, cwd=tmp_path)
    assert 'records identical: yes' in out
    assert len(re.findall(r'ratio ([0-9.]+)', out)) == 2, out  # pipelined / sequential video, batched / single folder
    assert re.search(r'pipelining could reach ([0-9.]+)x', out) and 'largest keypoint difference' in out


@pytest.mark.slow
def test_bench_backends(reference_dir, tmp_path):
    out = run_smoke('bench_backends.py', '--shared', reference_dir.parent, cwd=tmp_path)
    network, frame = out.split('network:')[1].split('full frame')
    assert len(ratios(network.splitlines())) == 6  # 2 files x (plain ONNX Runtime, lwop_jax's, OpenVINO)
    assert len(ratios(frame.splitlines())) == 2  # the full frame on both runtimes


@pytest.mark.slow
def test_bench_int8_heldout(reference_dir, overfit_onnx, tmp_path):
    out = run_smoke('bench_int8_heldout.py', '--shared', reference_dir.parent, cwd=tmp_path)
    scored = re.findall(r'^(.+?) +(fp32|int8) +AP ([0-9.]+) \(([-+][0-9.]+) vs fp32 ORT\)', out, re.MULTILINE)
    assert [(name.strip(), precision) for name, precision, _, _ in scored] == [
        ('fp32 ONNX Runtime', 'fp32'),
        ('fp32 OpenVINO', 'fp32'),
        ('int8 ONNX Runtime (QDQ)', 'int8'),
        ('int8 OpenVINO (NNCF)', 'int8'),
    ], out
    assert 'keypoint agreement' in out  # the accuracy gate's figures, for both int8 models


@pytest.mark.slow
def test_bench_pipeline(coco_mini_dir, tmp_path):
    out = run_smoke('bench_pipeline.py', '--coco-mini', coco_mini_dir, cwd=tmp_path)
    versus_original = re.findall(r'= ([0-9.]+)x the original', out)
    assert len(versus_original) == 6, out  # single-threaded x 2 decodes, tf.data x (json, tfds) x 2 OpenCV settings
    assert all(float(value) > 0 for value in versus_original)
