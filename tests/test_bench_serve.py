"""benchmarks/bench_serve.py --smoke: the serving benchmark end to end (a real `lwop serve` per precision, fp32
and int8 through the accuracy gate), so that it cannot rot; its figures mean nothing."""

import json
import pathlib
import subprocess
import sys

import pytest

pytest.importorskip('starlette', reason='needs the serve extra')

PROJECT_ROOT = pathlib.Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_smoke_run_measures_both_precisions(coco_mini_dir, overfit_onnx, tmp_path):
    out = tmp_path / 'bench.json'
    script = PROJECT_ROOT / 'benchmarks' / 'bench_serve.py'
    command = [sys.executable, str(script), '--smoke', '--model', str(overfit_onnx), '--json', str(out)]
    command += ['--shared', str(coco_mini_dir.parents[1])]
    done = subprocess.run(command, capture_output=True, text=True, timeout=900, cwd=tmp_path)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    figures = json.loads(out.read_text())
    for precision in ('fp32', 'int8'):
        rows = figures[precision]
        assert set(rows) == {'in-process', 'clients 1', 'clients 2'}
        for row in rows.values():
            assert row['requests'] >= 4 and row['requests_per_s'] > 0 and row['p95_ms'] >= row['p50_ms'] > 0
        # a request's latency holds the inference the service timed, and more
        assert 0 < rows['clients 1']['outside_inference_p50_ms'] < rows['clients 1']['p50_ms']
    assert 'overhead at 1 client' in done.stdout and 'throughput clients 2 / clients 1' in done.stdout
