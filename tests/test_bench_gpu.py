"""benchmarks/bench_gpu.py --smoke: the one-call GPU benchmark at tiny sizes on the CPU, so that it cannot rot
before a GPU runs it."""

import importlib.util
import json
import pathlib
import subprocess
import sys

import pytest

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
    # float32 rounding (training-mode losses are not comparable: see bench_gpu.eval_output_energy).
    plain, shifted = (row['result']['eval_output_energy'] for row in sorted(jax_rows, key=lambda r: r['formulation']))
    assert abs(plain - shifted) <= float32_energy_bound() * plain, (plain, shifted, float32_energy_bound())
    torch_row = next(row for row in summary['rows'] if row['framework'] == 'torch')
    if importlib.util.find_spec('torch') is None:
        assert 'torch' in torch_row['error']
    else:
        assert torch_row['result']['images_per_s'] > 0
    if (PROJECT_ROOT.parent / 'shared' / 'data' / 'coco_val_mini').is_dir():
        assert summary['pipeline']['samples_per_s_per_core'] > 0
    assert 'fastest formulation' in done.stdout


def float32_energy_bound() -> float:
    """The relative difference two float32 formulations of the smoke network may show in the sum of squares of
    its eval-mode outputs, derived rather than measured.

    A float32 sum of n products is off by about sqrt(n) u relative (u = 2^-24, rounding errors of random sign:
    Higham, Accuracy and Stability of Numerical Algorithms, 2.8). In eval mode BatchNorm is a fixed affine map
    near the identity at initialisation and ReLU is 1-Lipschitz, so along a path of L convolutions the errors
    add: L sqrt(n_max) u per output, each formulation; twice that between the two, and twice again for the
    square. L is bounded by the network's number of convolutions."""
    import math

    from flax import nnx

    from lwop_jax.model.layers import Conv2d
    from lwop_jax.model.posenet import PoseNet

    convs = [m for _, m in nnx.iter_modules(PoseNet(1, rngs=nnx.Rngs(0))) if isinstance(m, Conv2d)]
    fan_in = max(math.prod(conv.kernel.shape[:3]) for conv in convs)
    return 4 * len(convs) * math.sqrt(fan_in) * 2.0**-24


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
