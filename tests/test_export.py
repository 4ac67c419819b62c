"""convert_torch_weights.py end to end, and the exported ONNX / OpenVINO graphs against the original.

Tolerance for the exports: the same as for JAX (1e-4 + 1e-4 |ref|); BN folding in float64 keeps the
error at the float32 floor (the original's own folded ONNX export is within 7.4e-6 of torch).
"""

import collections

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from test_model import nchw_outputs, reference_outputs
from torch_files import legacy_file, state_dict_file

import lwop_jax
from lwop_jax.checkpoints import export
from lwop_jax.cli import convert as convert_torch_weights

ORIGINAL_OUTPUT_NAMES = [
    'stage_0_output_1_heatmaps',
    'stage_0_output_0_pafs',
    'stage_1_output_1_heatmaps',
    'stage_1_output_0_pafs',
]


@pytest.fixture(scope='module')
def converted(reference_dir, tmp_path_factory):
    """The reference checkpoint through the CLI: orbax + dynamic ONNX + OpenVINO IR."""
    out = tmp_path_factory.mktemp('converted')
    code = convert_torch_weights.main(
        [
            str(reference_dir / 'lwop_random_1stage_legacy.pth'),
            '--output',
            str(out / 'orbax'),
            '--onnx',
            str(out / 'lwop.onnx'),
            '--openvino',
            str(out / 'openvino'),
        ]
    )
    assert code == 0
    return out


@pytest.fixture(scope='module')
def reference(reference_dir):
    return np.load(reference_dir / 'reference_outputs_1stage.npz')


def ort_session(path):
    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    return ort.InferenceSession(str(path), options, providers=['CPUExecutionProvider'])


def test_onnx_interface_matches_the_original(converted, reference_dir):
    ours = onnx.load(converted / 'lwop.onnx')
    original = onnx.load(reference_dir / 'original_1stage_256x456.onnx')
    assert [o.name for o in ours.graph.output] == [o.name for o in original.graph.output] == ORIGINAL_OUTPUT_NAMES
    assert [i.name for i in ours.graph.input] == ['data']
    dims = [d.dim_param or d.dim_value for d in ours.graph.input[0].type.tensor_type.shape.dim]
    assert dims[1] == 3 and all(isinstance(d, str) for d in (dims[0], dims[2], dims[3]))  # dynamic N, H, W
    ops = collections.Counter(node.op_type for node in ours.graph.node)
    assert 'BatchNormalization' not in ops and ops['Conv'] == 57


@pytest.mark.parametrize('case', ['onnx', 'a', 'b'])  # 256x456 (the original's export size), 256x392, 368x368
def test_onnxruntime_matches_the_original(converted, reference, case):
    session = ort_session(converted / 'lwop.onnx')
    x = reference[f'{case}_input']
    for batch in (x, np.concatenate([x, x])):
        outputs = session.run(None, {'data': batch})
        for ours, ref in zip(outputs, reference_outputs(reference, case)):
            assert ours.shape == (len(batch),) + ref.shape[1:]
            np.testing.assert_allclose(ours, np.broadcast_to(ref, ours.shape), rtol=1e-4, atol=1e-4)


def test_onnxruntime_batch_of_two_different_images_at_an_odd_size(converted, reference_dir):
    # openpifpaf's check: odd input size, batch 2, two different inputs, against the JAX model.
    model = lwop_jax.load_model(reference_dir / 'lwop_random_1stage_legacy.pth')
    x = np.random.default_rng(0).normal(0, 0.25, size=(2, 3, 201, 333)).astype(np.float32)
    outputs = ort_session(converted / 'lwop.onnx').run(None, {'data': x})
    for ours, expected in zip(outputs, nchw_outputs(model, x)):
        assert ours.shape == expected.shape
        np.testing.assert_allclose(ours, expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize('case', ['onnx', 'b'])
def test_openvino_matches_the_original(converted, reference, case):
    import openvino as ov

    xml = converted / 'openvino' / 'lwop.xml'
    compiled = ov.Core().compile_model(str(xml), 'CPU', {'INFERENCE_PRECISION_HINT': 'f32'})
    assert [o.get_any_name() for o in compiled.outputs] == ORIGINAL_OUTPUT_NAMES
    x = reference[f'{case}_input']
    for batch in (x, np.concatenate([x, x])):
        result = compiled(batch)
        for output, ref in zip(compiled.outputs, reference_outputs(reference, case)):
            np.testing.assert_allclose(result[output], np.broadcast_to(ref, result[output].shape), rtol=1e-4, atol=1e-4)


def test_export_from_an_orbax_checkpoint(converted, tmp_path, reference):
    code = convert_torch_weights.main(
        [str(converted / 'orbax'), '--onnx', str(tmp_path / 'again.onnx'), '--input-size', '256', '456']
    )
    assert code == 0
    session = ort_session(tmp_path / 'again.onnx')
    assert session.get_inputs()[0].shape == [1, 3, 256, 456]
    for ours, ref in zip(session.run(None, {'data': reference['onnx_input']}), reference_outputs(reference, 'onnx')):
        np.testing.assert_allclose(ours, ref, rtol=1e-4, atol=1e-4)


def test_output_names_for_three_stages():
    assert export.output_names(4)[-2:] == ['stage_3_output_1_heatmaps', 'stage_3_output_0_pafs']


# --- bad input: one readable line naming the file, non-zero exit, nothing written -----------------


def run_cli_expecting_failure(capsys, tmp_path, checkpoint, *fragments):
    output = tmp_path / 'out'
    code = convert_torch_weights.main([str(checkpoint), '--output', str(output), '--onnx', str(tmp_path / 'x.onnx')])
    err = capsys.readouterr().err.strip()
    assert code == 1
    assert err.count('\n') == 0 and str(checkpoint) in err
    for fragment in fragments:
        assert fragment in err
    assert not output.exists() and not (tmp_path / 'x.onnx').exists()


def test_cli_missing_file(capsys, tmp_path):
    run_cli_expecting_failure(capsys, tmp_path, tmp_path / 'nope.pth', 'file not found')


def test_cli_truncated_file(capsys, tmp_path, reference_dir):
    cut = tmp_path / 'cut.pth'
    cut.write_bytes((reference_dir / 'lwop_random_1stage_legacy.pth').read_bytes()[:5_000_000])
    run_cli_expecting_failure(capsys, tmp_path, cut, 'truncated or corrupt')


def test_cli_not_a_torch_checkpoint(capsys, tmp_path):
    junk = tmp_path / 'photo.pth'
    junk.write_bytes(b'\xff\xd8\xff\xe0 not really a checkpoint' * 10)
    run_cli_expecting_failure(capsys, tmp_path, junk, 'not a PyTorch checkpoint')


def test_cli_refuses_a_malicious_pickle_without_running_it(capsys, tmp_path):
    from torch_files import call, g, obj

    marker = tmp_path / 'pwned'
    evil = legacy_file(tmp_path / 'evil.pth', call(g('os', 'system'), obj(f'touch {marker}')), {})
    run_cli_expecting_failure(capsys, tmp_path, evil, 'os.system')
    assert not marker.exists()


def test_cli_shape_mismatch(capsys, tmp_path, reference_dir):
    from lwop_jax.checkpoints.torch_file import read_state_dict

    state = read_state_dict(reference_dir / 'lwop_random_1stage_zip.pth')
    state['initial_stage.heatmaps.1.0.weight'] = np.zeros((17, 512, 1, 1), np.float32)  # 17 keypoints, not 19
    bad = state_dict_file(tmp_path / 'coco17.pth', state)
    run_cli_expecting_failure(capsys, tmp_path, bad, 'wrong shape', 'initial_stage.heatmaps.1.0.kernel')


def test_cli_mobilenet_is_not_a_pose_checkpoint(capsys, tmp_path, reference_dir):
    run_cli_expecting_failure(capsys, tmp_path, reference_dir / 'mobilenet_sgd_format.pth.tar', '--from-mobilenet')
