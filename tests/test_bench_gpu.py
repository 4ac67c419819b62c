"""benchmarks/bench_gpu.py --smoke: the one-call GPU benchmark at tiny sizes on the CPU, so that it cannot rot
before a GPU runs it."""

import importlib.util
import json
import pathlib
import subprocess
import sys

import pytest
from flax import nnx
from float32_bounds import relative_difference_bound

from lwop_jax.model.posenet import PoseNet

PROJECT_ROOT = pathlib.Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_smoke_run_measures_every_configuration(tmp_path):
    out = tmp_path / 'bench.json'
    script = PROJECT_ROOT / 'benchmarks' / 'bench_gpu.py'
    command = [sys.executable, str(script), '--smoke', '--out', str(out)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    summary = json.loads(out.read_text())
    jax_rows = [row for row in summary['rows'] if row['framework'] == 'jax']
    assert sorted(row['formulation'] for row in jax_rows) == ['plain', 'shifted']
    for row in jax_rows:
        result = row['result']
        assert result['images_per_s'] > 0 and result['tflops'] > 0 and result['forward_gflop_per_image'] > 0
    # The two formulations compute the same network from the same weights: the same outputs in eval mode, to
    # float32 rounding (training-mode losses are not comparable: see bench_gpu.eval_output_energy). A sum of
    # squares moves by twice the outputs' relative difference.
    plain, shifted = (row['result']['eval_output_energy'] for row in sorted(jax_rows, key=lambda r: r['formulation']))
    bound = 2 * relative_difference_bound(PoseNet(1, rngs=nnx.Rngs(0)))
    assert abs(plain - shifted) <= bound * plain, (plain, shifted, bound)
    torch_row = next(row for row in summary['rows'] if row['framework'] == 'torch')
    if importlib.util.find_spec('torch') is None:
        assert 'torch' in torch_row['error']
    else:
        assert torch_row['result']['images_per_s'] > 0
    if (PROJECT_ROOT.parent / 'shared' / 'data' / 'coco_val_mini').is_dir():
        assert summary['pipeline']['samples_per_s_per_core'] > 0
    assert 'fastest formulation' in done.stdout


def test_the_pytorch_baseline_is_the_original_network(reference_dir):
    """The benchmark's PyTorch transcription loads the original's checkpoint strictly (same module names and
    shapes) and gives the original's outputs (the tolerance of the network parity test)."""
    torch = pytest.importorskip('torch', reason='the PyTorch baseline needs torch (not a dependency of lwop_jax)')
    import numpy as np

    sys.path.insert(0, str(PROJECT_ROOT / 'benchmarks'))
    import bench_gpu

    from lwop_jax.checkpoints.torch_file import read_state_dict

    state = {
        k: torch.from_numpy(np.array(v))
        for k, v in read_state_dict(reference_dir / 'lwop_random_1stage_legacy.pth').items()
    }
    network = bench_gpu.torch_posenet(torch, 1)
    network.load_state_dict(state, strict=True)
    reference = np.load(reference_dir / 'reference_outputs_1stage.npz')
    with torch.no_grad():
        outputs = network.eval()(torch.from_numpy(reference['b_input']))
    for stage, (heatmaps, pafs) in enumerate(outputs):
        np.testing.assert_allclose(heatmaps.numpy(), reference[f'b_stage{stage}_heatmaps'], rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(pafs.numpy(), reference[f'b_stage{stage}_pafs'], rtol=1e-4, atol=1e-4)
