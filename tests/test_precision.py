"""Precision as an option: the rules, the model files' tags, bf16 on OpenVINO, int8 (ONNX Runtime QDQ and NNCF)
behind the accuracy gate, and one line per bad input. Real ONNX Runtime, OpenVINO and NNCF throughout."""

import collections
import json
import math
import re
import shutil

import cv2
import numpy as np
import onnx
import openvino as ov
import pytest
from float32_bounds import UNIT_ROUNDOFF

from lwop_jax.checkpoints import metadata
from lwop_jax.cli import convert, evaluate, infer
from lwop_jax.cli import main as lwop
from lwop_jax.errors import AccuracyGateError, ModelFileError
from lwop_jax.evaluation import gate
from lwop_jax.evaluation.agreement import Agreement, pose_oks
from lwop_jax.evaluation.compare import compare_backends, labelled_images
from lwop_jax.inference import backends, precision
from lwop_jax.inference.estimator import PoseEstimator

# OpenVINO's telemetry sends events from forked processes (on import, on each conversion); in this pytest process,
# where JAX is loaded, each fork warns. `lwop` itself starts them from a fork server: tests/test_convert_cli.py.
pytestmark = pytest.mark.filterwarnings('ignore:os.fork\\(\\) was called:RuntimeWarning')
CPU_HAS_BF16 = precision.openvino_bf16_available(ov.Core())
SMALL = np.random.default_rng(0).normal(0, 0.25, (1, 64, 96, 3)).astype(np.float32)  # a small network input


def err_lines(capfd):
    return [line for line in capfd.readouterr().err.splitlines() if line.strip() and 'Warning' not in line]


# -- the rules ------------------------------------------------------------------------------------


def test_resolve_rules(capfd):
    assert precision.resolve('m', 'onnxruntime', None, None) == 'fp32'
    assert precision.resolve('m', 'onnxruntime', None, 'int8') == 'int8'
    assert precision.resolve('m', 'openvino', 'bf16', 'fp32', bf16_available=True) == 'bf16'
    assert precision.resolve('m', 'openvino', None, 'bf16', bf16_available=True) == 'bf16'
    assert precision.resolve('m', 'openvino', 'fp32', 'bf16', bf16_available=True) == 'fp32'
    for args, message in [
        (('onnxruntime', 'bf16', None), 'the onnxruntime backend cannot run bf16'),
        (('jax', 'bf16', None), 'the jax backend cannot run bf16'),
        (('onnxruntime', 'int8', 'fp32'), 'not a quantized model (fp32)'),
        (('jax', 'int8', None), 'not a quantized model'),
        (('openvino', 'fp32', 'int8'), 'an int8-quantized model runs at int8 only, not fp32'),
        (('openvino', None, 'fp16'), "the file says precision 'fp16'"),
    ]:
        with pytest.raises(ModelFileError, match=re.escape(message)) as info:
            precision.resolve('model.onnx', *args, bf16_available=True)
        assert str(info.value).startswith('model.onnx: ') and '\n' not in str(info.value)
    capfd.readouterr()
    # Without bf16 in the CPU, or a file merely tagged bf16 on ORT: fp32 and one warning line.
    assert precision.resolve('m.xml', 'openvino', 'bf16', None, bf16_available=False) == 'fp32'
    assert precision.resolve('m.onnx', 'onnxruntime', None, 'bf16') == 'fp32'
    assert err_lines(capfd) == [
        'warning: m.xml: this CPU has no bf16 (OpenVINO OPTIMIZATION_CAPABILITIES lacks BF16); running fp32',
        'warning: m.onnx: made for bf16, but the onnxruntime backend has no bf16 mode; running fp32',
    ]


def test_bf16_capability_is_the_devices():
    capabilities = ov.Core().get_property('CPU', 'OPTIMIZATION_CAPABILITIES')
    assert ('BF16' in capabilities) == CPU_HAS_BF16


def test_agreement_counts_moved_lost_and_extra_people():
    person = np.zeros((18, 3))
    person[:, 0], person[:, 1], person[:, 2] = np.arange(18) * 10, np.arange(18) * 5, 1.0
    same = Agreement()
    same.add(person[None], person[None])
    assert same.value == 1.0 and same.matched == 1
    moved = person.copy()
    moved[:, 0] += 8
    assert 0.5 < pose_oks(person[None], moved[None])[0, 0] < 1.0
    half = person.copy()
    half[9:] = [-1, -1, 0]
    assert pose_oks(person[None], half[None])[0, 0] == pytest.approx(0.5)  # 9 of 18 keypoints lost
    extra = Agreement()
    extra.add(person[None], np.stack([person, person + [500, 0, 0]]))
    assert (extra.people_a, extra.people_b, extra.matched) == (1, 2, 1) and extra.value == pytest.approx(0.5)
    nobody = Agreement()
    nobody.add(np.zeros((0, 18, 3)), np.zeros((0, 18, 3)))
    assert nobody.value == 1.0 and nobody.people_a == 0


# -- tags and bf16 ------------------------------------------------------------------------------------


def test_calibration_images_are_spread_over_the_folder(tmp_path):
    assert gate.spread_first(list(range(10)), 4) == [0, 3, 6, 9, 1, 2, 4, 5, 7, 8]
    assert gate.spread_first(list(range(3)), 5) == [0, 1, 2]
    assert gate.spread_first(list(range(5)), 1) == [0, 1, 2, 3, 4]
    for k in range(9):  # frames of a video: 9 files, the 4th unreadable
        image = np.full((16, 16, 3), 20 * k, np.uint8)
        cv2.imwrite(str(tmp_path / f'frame_{k}.png'), image)
    (tmp_path / 'frame_4.png').write_bytes(b'not an image')
    picked = gate.calibration_set(tmp_path, max_images=3)
    # 0, 4 and 8 spread over the folder; 4 is unreadable, so the first unpicked readable one stands in.
    assert [path.name for _, path in picked.images] == ['frame_0.png', 'frame_8.png', 'frame_1.png']
    assert [int(a[0, 0, 0]) for a in picked.arrays] == [0, 160, 20]


def test_export_has_no_subnormal_weights_and_is_tagged_fp32(overfit_onnx):
    model = onnx.load(str(overfit_onnx))
    assert {p.key: p.value for p in model.metadata_props}[metadata.PRECISION_KEY] == 'fp32'
    tiny = np.finfo(np.float32).tiny
    for tensor in model.graph.initializer:
        values = onnx.numpy_helper.to_array(tensor)
        if values.dtype == np.float32:
            assert not ((values != 0) & (np.abs(values) < tiny)).any(), tensor.name


@pytest.fixture(scope='module')
def bf16_files(overfit_onnx, tmp_path_factory):
    out = tmp_path_factory.mktemp('bf16')
    argv = [str(overfit_onnx), '--onnx', str(out / 'lwop.onnx'), '--openvino', str(out / 'ir'), '--precision', 'bf16']
    assert convert.main(argv) == 0
    return out


BF16_UNIT_ROUNDOFF = 2.0**-8  # bfloat16 keeps 8 significant bits: round to nearest is off by at most 2^-8


def conv_chain(model: onnx.ModelProto) -> tuple[int, int, int]:
    """(convolutions on the longest path from the input to an output, largest fan-in, number of convolutions)
    of an ONNX graph."""
    model = onnx.shape_inference.infer_shapes(model)
    shapes = {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim] for v in model.graph.value_info}
    shapes.update({t.name: list(t.dims) for t in model.graph.initializer})
    depth: dict[str, int] = {}
    convs = [node for node in model.graph.node if node.op_type == 'Conv']
    for node in model.graph.node:  # ONNX nodes come in topological order
        longest = max((depth.get(name, 0) for name in node.input), default=0) + (node.op_type == 'Conv')
        depth.update((name, longest) for name in node.output)
    fan_in = max(math.prod(shapes[node.input[1]][1:]) for node in convs)
    return max(depth[output.name] for output in model.graph.output), fan_in, len(convs)


def rounding_bounds(model: onnx.ModelProto) -> tuple[float, float]:
    """(how far two float32 computations of ``model`` may differ, how far a bf16 one may be from a float32 one),
    each relative to an output's largest magnitude.

    float32: tests/float32_bounds.py's argument, 2 L sqrt(n) 2^-24 (a sum of n products is off by about
    sqrt(n) u, errors add along a path of L convolutions). bf16: OpenVINO rounds each convolution's inputs and
    weights to bf16 and accumulates in f32. Rounding two factors makes each product off by at most 2 u,
    u = 2^-8; with random signs the sum's error grows as sqrt(n) like the sum itself, so it stays 2 u of the
    sum's scale, plus the f32 accumulation's sqrt(n) 2^-24. Along L convolutions: L (2 u + sqrt(n) 2^-24),
    and the float32 reference's own L sqrt(n) 2^-24 on top.
    """
    depth, fan_in, _ = conv_chain(model)
    float32 = 2 * depth * math.sqrt(fan_in) * UNIT_ROUNDOFF
    return float32, depth * 2 * BF16_UNIT_ROUNDOFF + float32


def convolution_precisions(backend) -> collections.Counter:
    """How many convolutions the CPU plugin runs at each precision (the compiled model's own record)."""
    runtime = [op.get_rt_info() for op in backend.compiled.get_runtime_model().get_ordered_ops()]
    return collections.Counter(
        info['runtimePrecision'].astype(str) for info in runtime if info['layerType'].astype(str) == 'Convolution'
    )


def test_bf16_tags_round_trip_and_openvino_runs_bf16(bf16_files, overfit_onnx, capfd):
    """Where the CPU has bf16, the compiled model computes every convolution in bf16 and its outputs differ
    from fp32 by more than any two float32 computations can, and by less than bf16 rounding can (see
    :func:`rounding_bounds`: about 2e-4 and 0.41 of an output's scale for this network). Elsewhere: fp32, a
    warning line, and float32 outputs."""
    assert {p.key: p.value for p in onnx.load(str(bf16_files / 'lwop.onnx')).metadata_props}[
        metadata.PRECISION_KEY
    ] == 'bf16'
    xml = next((bf16_files / 'ir').glob('*.xml'))
    assert metadata.openvino_precision(ov.Core().read_model(str(xml))) == 'bf16'
    capfd.readouterr()
    bf16 = backends.load_backend(xml, threads=2)  # the file's tag
    warnings = err_lines(capfd)
    fp32 = backends.load_backend(xml, threads=2, precision='fp32')
    reference = backends.load_backend(overfit_onnx, threads=2)
    assert fp32.precision == reference.precision == 'fp32'
    float32_bound, bf16_bound = rounding_bounds(onnx.load(str(overfit_onnx)))
    convolutions = conv_chain(onnx.load(str(overfit_onnx)))[2]
    assert fp32.compiled.get_property('INFERENCE_PRECISION_HINT') == ov.Type.f32
    assert convolution_precisions(fp32) == {'f32': convolutions}
    if CPU_HAS_BF16:
        assert bf16.precision == 'bf16' and not warnings
        assert bf16.compiled.get_property('INFERENCE_PRECISION_HINT') == ov.Type.bf16
        assert convolution_precisions(bf16) == {'bf16': convolutions}
    else:
        assert bf16.precision == 'fp32'
        assert warnings == [
            f'warning: {xml}: this CPU has no bf16 (OpenVINO OPTIMIZATION_CAPABILITIES lacks BF16); running fp32'
        ]
        assert convolution_precisions(bf16) == {'f32': convolutions}
    for ours, ref, fp in zip(bf16(SMALL), reference(SMALL), fp32(SMALL)):
        scale = np.abs(ref).max()
        assert np.abs(fp - ref).max() <= float32_bound * scale  # fp32 stays float32
        difference = np.abs(ours - ref).max()
        if CPU_HAS_BF16:
            assert float32_bound * scale < difference <= bf16_bound * scale, (difference / scale, float32_bound)
        else:
            assert difference <= float32_bound * scale
    # ONNX Runtime has no bf16 mode: the bf16-tagged ONNX runs fp32, with one warning line.
    capfd.readouterr()
    assert backends.load_backend(bf16_files / 'lwop.onnx', threads=2).precision == 'fp32'
    assert err_lines(capfd) == [
        f'warning: {bf16_files / "lwop.onnx"}: made for bf16, but the onnxruntime backend has no bf16 mode; '
        'running fp32'
    ]


def test_estimator_precision_option(bf16_files, coco_mini_dir):
    image = cv2.imread(str(sorted((coco_mini_dir / 'val2017').glob('*.jpg'))[0]))
    xml = next((bf16_files / 'ir').glob('*.xml'))
    fp32 = PoseEstimator(xml, threads=2, precision='fp32')
    bf16 = PoseEstimator(xml, threads=2, precision='bf16')
    assert fp32.precision == 'fp32' and bf16.precision == ('bf16' if CPU_HAS_BF16 else 'fp32')
    assert len(fp32(image)) == len(bf16(image)) > 0


# -- int8 ---------------------------------------------------------------------------------------------


@pytest.fixture(scope='module')
def int8_files(overfit_onnx, coco_mini_dir, tmp_path_factory):
    """The overfit model quantized for both runtimes on two labelled mini images, through the CLI."""
    out = tmp_path_factory.mktemp('int8')
    argv = [str(overfit_onnx), '--onnx', str(out / 'int8.onnx'), '--openvino', str(out / 'ir'), '--precision', 'int8']
    assert convert.main(argv + mini_calibration(coco_mini_dir)) == 0
    return out


def mini_calibration(coco_mini_dir) -> list[str]:
    """Calibration on two labelled COCO mini images (the int8 gate also compares AP)."""
    argv = ['--calibration-images', str(coco_mini_dir / 'val2017'), '--max-calibration-images', '2']
    return argv + ['--calibration-labels', str(coco_mini_dir / 'person_keypoints_val2017_mini.json'), '--threads', '2']


@pytest.mark.slow
def test_int8_models_are_tagged_gated_and_run(int8_files, overfit_onnx, coco_mini_dir, capfd):
    onnx_meta = {p.key: p.value for p in onnx.load(str(int8_files / 'int8.onnx')).metadata_props}
    assert onnx_meta[metadata.PRECISION_KEY] == 'int8'
    record = json.loads(onnx_meta[metadata.QUANTIZATION_KEY])
    assert record['calibration_images'] == 2 and len(record['kept_fp32']) == 4
    assert record['gate']['agreement'] >= gate.MIN_AGREEMENT and record['gate']['ap_int8'] is not None
    ir = ov.Core().read_model(str(next((int8_files / 'ir').glob('*.xml'))))
    assert metadata.openvino_precision(ir) == 'int8'
    assert metadata.openvino_quantization(ir)['method'] == 'NNCF MIXED MinMax, no overflow fix'
    # Full 8-bit weights in every quantized layer: NNCF's default overflow fix leaves the first one at 7 bits
    # (63 at most), which cost held-out AP.
    weights = [op.get_data() for op in ir.get_ordered_ops() if op.get_type_name() == 'Constant']
    int8_weights = [w for w in weights if w.dtype == np.int8]
    assert int8_weights and all(np.abs(w.astype(np.int32)).max() == 127 for w in int8_weights)
    # The CPU plugin really runs the quantized convolutions in 8 bits, the 4 of the kept heads in f32.
    compiled = ov.Core().compile_model(ir, 'CPU', {'INFERENCE_PRECISION_HINT': 'f32', 'INFERENCE_NUM_THREADS': 2})
    runtime = [op.get_rt_info() for op in compiled.get_runtime_model().get_ordered_ops()]
    convolutions = collections.Counter(
        info['runtimePrecision'].astype(str) for info in runtime if info['layerType'].astype(str) == 'Convolution'
    )
    assert convolutions == {'u8': 53, 'f32': 4}, convolutions
    dataset = json.loads((coco_mini_dir / 'person_keypoints_val2017_mini.json').read_text())
    images = labelled_images(dataset, coco_mini_dir / 'val2017')
    reference = backends.load_backend(overfit_onnx, threads=2)
    for path, backend in ((int8_files / 'int8.onnx', 'onnxruntime'), (next((int8_files / 'ir').glob('*.xml')), None)):
        quantized = backends.load_backend(path, backend, threads=2)
        assert quantized.precision == 'int8'
        comparison = compare_backends(reference, quantized, images, dataset)
        assert comparison.agreement.value > 0.9 and comparison.ap_drop < 0.05, (path, comparison)
    # An int8 model is not quantized again.
    capfd.readouterr()
    assert convert.main([str(int8_files / 'int8.onnx'), '--openvino', str(int8_files / 'again')]) == 1
    lines = err_lines(capfd)
    assert lines == [f'error: {int8_files / "int8.onnx"}: already an int8 model; convert its fp32 export instead']


@pytest.mark.slow
def test_infer_and_evaluate_print_the_precision(int8_files, overfit_onnx, coco_mini_dir, tmp_path, capfd):
    image = sorted((coco_mini_dir / 'val2017').glob('*.jpg'))[0]
    model = int8_files / 'int8.onnx'
    status = infer.main(['--checkpoint-path', str(model), '--images', str(image), '--json', str(tmp_path / 'p.json')])
    assert status == 0 and f'model {model}: onnxruntime, int8' in capfd.readouterr().out
    assert json.loads((tmp_path / 'p.json').read_text())['precision'] == 'int8'
    labels = coco_mini_dir / 'person_keypoints_val2017_mini.json'
    argv = ['--labels', str(labels), '--images-folder', str(coco_mini_dir / 'val2017'), '--no-progress']
    argv += ['--checkpoint-path', str(overfit_onnx), '--compare', str(model), '--threads', '2']
    assert evaluate.main(argv + ['--output-name', str(tmp_path / 'd.json')]) == 0
    out = capfd.readouterr().out
    assert '(onnxruntime, fp32)' in out and '(onnxruntime, int8)' in out
    assert any(line.startswith('AP ') for line in out.splitlines()) and 'keypoint agreement' in out


@pytest.mark.slow
def test_gate_refuses_a_model_calibrated_on_a_blank_image(overfit_onnx, coco_mini_dir, tmp_path):
    """Calibrated on one blank image, the int8 model loses the people of real images: the gate names it."""
    from lwop_jax.checkpoints import quantize

    inputs = quantize.calibration_inputs([np.zeros((240, 320, 3), np.uint8)])
    broken = quantize.quantize_onnx(overfit_onnx, tmp_path / 'broken.onnx', inputs, [])
    dataset = json.loads((coco_mini_dir / 'person_keypoints_val2017_mini.json').read_text())
    comparison = compare_backends(
        backends.load_backend(overfit_onnx, threads=2),
        backends.load_backend(broken, threads=2),
        labelled_images(dataset, coco_mini_dir / 'val2017'),
        dataset,
    )
    with pytest.raises(AccuracyGateError, match=r'out.onnx: int8 model refused, nothing written: keypoint agreement'):
        gate.check_gate(comparison, 'out.onnx', gate.MIN_AGREEMENT, gate.MAX_AP_DROP)
    assert comparison.agreement.value < gate.MIN_AGREEMENT and comparison.ap_drop > 0.5


# -- the int8 gate through `lwop convert`: refusals --------------------------------------------------------

GATE_OUTPUTS = {'onnxruntime': ('--onnx', 'int8.onnx'), 'openvino': ('--openvino', 'ir')}
NUMBER = r'(-?\d+\.\d+)'


def gate_record(int8_files, runtime: str) -> dict:
    """What the accepted int8 model of ``runtime`` reached on the mini calibration (its file's gate record)."""
    if runtime == 'onnxruntime':
        entries = {p.key: p.value for p in onnx.load(str(int8_files / 'int8.onnx')).metadata_props}
        return json.loads(entries[metadata.QUANTIZATION_KEY])['gate']
    ir = ov.Core().read_model(str(next((int8_files / 'ir').glob('*.xml'))))
    return metadata.openvino_quantization(ir)['gate']


def refusal(runtime: str, argv: list[str], tmp_path, capfd) -> str:
    """``lwop convert ARGV`` quantizing for ``runtime``: exit status 1, one error line, no model written.
    Returns what the line says after 'int8 model refused, nothing written: '."""
    flag, name = GATE_OUTPUTS[runtime]
    target = tmp_path / name
    capfd.readouterr()
    assert lwop.main(['convert', *argv, flag, str(target), '--precision', 'int8']) == 1
    lines = [line for line in err_lines(capfd) if 'Statistics collection' not in line]
    prefix = f'error: {target}: int8 model refused, nothing written: '
    assert len(lines) == 1 and lines[0].startswith(prefix), lines
    assert not target.exists()
    return lines[0][len(prefix) :]


@pytest.mark.slow
@pytest.mark.parametrize('runtime', sorted(GATE_OUTPUTS))
def test_gate_refuses_agreement_below_min_agreement(runtime, int8_files, overfit_onnx, coco_mini_dir, tmp_path, capfd):
    """The calibration that int8_files passed, with --min-agreement just above the agreement it reached:
    refused, and the line names that agreement and the people each model found."""
    reached = gate_record(int8_files, runtime)
    wanted = round(reached['agreement'] + 0.002, 3)  # the record keeps 4 digits: 0.002 is clearly above
    argv = [str(overfit_onnx), *mini_calibration(coco_mini_dir), '--min-agreement', str(wanted)]
    problem = refusal(runtime, argv, tmp_path, capfd)
    match = re.fullmatch(
        rf'keypoint agreement {NUMBER} < {NUMBER} \(--min-agreement; people found: fp32 (\d+), int8 (\d+)\)', problem
    )
    assert match, problem
    assert float(match[1]) == pytest.approx(reached['agreement'], abs=1e-3) and float(match[2]) == wanted
    assert (int(match[3]), int(match[4])) == (reached['people_fp32'], reached['people_int8'])


@pytest.mark.slow
@pytest.mark.parametrize('runtime', sorted(GATE_OUTPUTS))
def test_gate_refuses_ap_drop_above_max_ap_drop(runtime, int8_files, overfit_onnx, coco_mini_dir, tmp_path, capfd):
    """The same calibration with --max-ap-drop just below the AP drop it had (which may be negative: int8 can
    score higher): refused, and the line names both APs and the drop."""
    reached = gate_record(int8_files, runtime)
    drop = reached['ap_fp32'] - reached['ap_int8']
    allowed = round(drop - 0.002, 3)
    argv = [str(overfit_onnx), *mini_calibration(coco_mini_dir), f'--max-ap-drop={allowed}']
    problem = refusal(runtime, argv, tmp_path, capfd)
    match = re.fullmatch(rf'AP {NUMBER} -> {NUMBER}, drop {NUMBER} > {NUMBER} \(--max-ap-drop\)', problem)
    assert match, problem
    assert float(match[1]) == pytest.approx(reached['ap_fp32'], abs=1e-3)
    assert float(match[2]) == pytest.approx(reached['ap_int8'], abs=1e-3)
    assert float(match[3]) == pytest.approx(drop, abs=2e-3) and float(match[4]) == allowed


@pytest.mark.slow
@pytest.mark.parametrize('runtime', sorted(GATE_OUTPUTS))
def test_gate_refuses_blank_calibration_images(runtime, overfit_onnx, tmp_path, capfd):
    """On blank images the fp32 model finds nobody, so agreement there proves nothing: refused, naming how many
    images it looked at."""
    blank = tmp_path / 'blank'
    blank.mkdir()
    for k in range(2):
        cv2.imwrite(str(blank / f'blank_{k}.png'), np.full((120, 160, 3), 40 * k, np.uint8))
    argv = [str(overfit_onnx), '--calibration-images', str(blank), '--threads', '2']
    problem = refusal(runtime, argv, tmp_path, capfd)
    assert problem.startswith('the fp32 model finds nobody on the 2 calibration image(s)'), problem


# -- bad input: one line each, exit status 1 -------------------------------------------------------


def test_convert_bad_input_is_one_line(overfit_onnx, tmp_path, capfd):
    target = tmp_path / 'int8.onnx'
    blank, unreadable = tmp_path / 'blank', tmp_path / 'unreadable'
    blank.mkdir()
    unreadable.mkdir()
    cv2.imwrite(str(blank / 'blank.png'), np.zeros((96, 128, 3), np.uint8))
    (unreadable / 'a.jpg').write_text('not an image')
    (unreadable / 'b.png').write_bytes(b'')
    base = [str(overfit_onnx), '--onnx', str(target), '--precision', 'int8', '--threads', '2']
    cases = [
        ([], f'error: {target}: --precision int8 needs --calibration-images DIR'),
        (['--calibration-images', str(unreadable)], f'error: {unreadable}: no readable image (2 image files tried)'),
        (['--calibration-images', str(tmp_path / 'nowhere')], f'error: {tmp_path / "nowhere"}: calibration images'),
        (
            ['--calibration-images', str(blank)],
            f'error: {target}: int8 model refused, nothing written: the fp32 model finds nobody',
        ),
    ]
    for extra, start in cases:
        capfd.readouterr()
        assert convert.main(base + extra) == 1
        lines = [line for line in err_lines(capfd) if 'Statistics collection' not in line]
        assert len(lines) == 1 and lines[0].startswith(start), lines
        assert not target.exists()


def test_precision_a_backend_cannot_honour_is_one_line(overfit_onnx, coco_mini_dir, tmp_path, capfd):
    image = sorted((coco_mini_dir / 'val2017').glob('*.jpg'))[0]
    model = tmp_path / 'model.onnx'
    shutil.copy(overfit_onnx, model)
    cases = [
        (['--precision', 'bf16', '--backend', 'onnxruntime'], 'the onnxruntime backend cannot run bf16'),
        (['--precision', 'int8'], 'not a quantized model (fp32)'),
    ]
    for extra, message in cases:
        capfd.readouterr()
        assert infer.main(['--checkpoint-path', str(model), '--images', str(image), *extra]) == 1
        lines = err_lines(capfd)
        assert len(lines) == 1 and lines[0].startswith(f'error: {model}: ') and message in lines[0], lines
    labels = coco_mini_dir / 'person_keypoints_val2017_mini.json'
    capfd.readouterr()
    argv = ['--labels', str(labels), '--images-folder', str(coco_mini_dir / 'val2017'), '--checkpoint-path']
    assert evaluate.main([*argv, str(model), '--precision', 'bf16', '--backend', 'onnxruntime']) == 1
    lines = err_lines(capfd)
    assert len(lines) == 1 and 'the onnxruntime backend cannot run bf16' in lines[0], lines
