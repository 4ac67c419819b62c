"""Commands and flags as a user types them, each run as ``python -m lwop_jax ...`` and checked for what it promises:
``lwop convert --keep-fp32`` (the layers named stay float in both int8 formats) and ``--num-refinement-stages``
(a model with that many stages), ``lwop infer`` on an int8 OpenVINO IR, ``lwop evaluate --flip`` and
``--compare``."""

import json
import re
import shutil

import numpy as np
import onnx
import openvino as ov
import pytest
from cli_runs import lwop

from lwop_jax.checkpoints import metadata
from lwop_jax.evaluation import coco_eval
from lwop_jax.inference.backends import load_backend

MINI_PEOPLE = [1, 2, 3, 5]  # people in the four COCO mini images (sorted by name)


@pytest.fixture(scope='module')
def mini(coco_mini_dir):
    return coco_mini_dir / 'person_keypoints_val2017_mini.json', coco_mini_dir / 'val2017'


# -- lwop convert --keep-fp32 ---------------------------------------------------------------------------------


def head_convolutions(model: onnx.ModelProto) -> set[str]:
    """Every stage's two heads: walking back from each of the four outputs, the two Conv nodes met first (a head is
    two 1x1 convolutions, the last one making the 19 heatmaps or 38 PAFs)."""
    producer = {output: node for node in model.graph.node for output in node.output}
    initializers = {tensor.name: tensor.dims for tensor in model.graph.initializer}

    def kernel_shape(conv):  # lwop_jax's exports keep HWIO kernels behind a Transpose to OIHW
        source = producer[conv.input[1]]
        assert source.op_type == 'Transpose'
        return list(initializers[source.input[0]])

    heads = set()
    for output in model.graph.output:
        node, found = producer[output.name], []
        while len(found) < 2:
            if node.op_type == 'Conv':
                found.append(node)
            node = producer[node.input[0]]
        last, first = found
        assert kernel_shape(last)[:2] == kernel_shape(first)[:2] == [1, 1] and kernel_shape(last)[3] in (19, 38)
        heads |= {last.name, first.name}
    return heads


def float_convolutions_onnx(path) -> set[str]:
    """Conv nodes of a QDQ ONNX file whose weights are float initializers, not the output of a DequantizeLinear."""
    model = onnx.load(str(path))
    initializers = {tensor.name for tensor in model.graph.initializer}
    return {node.name for node in model.graph.node if node.op_type == 'Conv' and node.input[1] in initializers}


def float_convolutions_openvino(path) -> set[str]:
    """Convolutions of an NNCF IR whose weights are a float constant (int8 ones: Multiply(Convert(i8 constant)))."""
    model = ov.Core().read_model(str(path))
    kinds = ('Convolution', 'GroupConvolution')
    convolutions = [op for op in model.get_ordered_ops() if op.get_type_name() in kinds]
    assert convolutions
    return {
        op.get_friendly_name()
        for op in convolutions
        if op.input_value(1).get_node().get_type_name() == 'Constant'
        and op.input_value(1).get_element_type() == ov.Type.f32
    }


@pytest.fixture(scope='module')
def calibration_images(mini, tmp_path_factory):
    """Two of the mini images (3 people): enough for the gate to compare int8 with fp32, and quick."""
    folder = tmp_path_factory.mktemp('calibration')
    for path in sorted(mini[1].glob('*.jpg'))[:2]:
        shutil.copy(path, folder)
    return folder


@pytest.fixture(scope='module')
def int8_all_heads(overfit_onnx, calibration_images, tmp_path_factory):
    """``lwop convert model.onnx --onnx --openvino --precision int8 --keep-fp32 all-heads``: (ONNX, IR xml)."""
    out = tmp_path_factory.mktemp('int8')
    lwop('convert', overfit_onnx, '--onnx', out / 'int8.onnx', '--openvino', out / 'ir', '--precision', 'int8',
         '--calibration-images', calibration_images, '--keep-fp32', 'all-heads', '--threads', 2, cwd=out)  # fmt: skip
    return out / 'int8.onnx', out / 'ir' / f'{overfit_onnx.stem}.xml'


@pytest.mark.slow
def test_keep_fp32_all_heads_keeps_every_heads_convolutions_float(overfit_onnx, int8_all_heads):
    heads = head_convolutions(onnx.load(str(overfit_onnx)))
    assert len(heads) == 8  # 2 stages x (heatmaps, PAFs) x 2 convolutions
    int8_onnx, int8_xml = int8_all_heads
    assert float_convolutions_onnx(int8_onnx) == heads
    assert float_convolutions_openvino(int8_xml) == heads
    # Each file records what it kept.
    stored = {p.key: p.value for p in onnx.load(str(int8_onnx)).metadata_props}
    assert set(json.loads(stored[metadata.QUANTIZATION_KEY])['kept_fp32']) == heads
    assert set(metadata.openvino_quantization(ov.Core().read_model(str(int8_xml)))['kept_fp32']) == heads


@pytest.mark.slow
def test_keep_fp32_names_keeps_exactly_those(overfit_onnx, calibration_images, tmp_path):
    convolutions = [node.name for node in onnx.load(str(overfit_onnx)).graph.node if node.op_type == 'Conv']
    named = convolutions[:2]  # the first two: the backbone's stem, nothing else stays float
    lwop('convert', overfit_onnx, '--onnx', tmp_path / 'int8.onnx', '--precision', 'int8', '--calibration-images',
         calibration_images, '--keep-fp32', ','.join(named), '--threads', 2, cwd=tmp_path)  # fmt: skip
    assert float_convolutions_onnx(tmp_path / 'int8.onnx') == set(named)


# -- lwop convert --num-refinement-stages -----------------------------------------------------------------------


@pytest.mark.slow
def test_num_refinement_stages_gives_a_model_with_that_many_stages(reference_dir, overfit_onnx, tmp_path):
    """The reference checkpoint has one refinement stage; --num-refinement-stages 0 keeps the initial stage only:
    the ONNX file has its two outputs (which are the full model's stage-0 outputs) and the orbax checkpoint no
    refinement stage."""
    lwop('convert', reference_dir / 'lwop_overfit_coco4.pth', '--output', tmp_path / 'orbax', '--onnx',
         tmp_path / 'stage0.onnx', '--num-refinement-stages', 0, cwd=tmp_path)  # fmt: skip
    outputs = [o.name for o in onnx.load(str(tmp_path / 'stage0.onnx')).graph.output]
    assert outputs == ['stage_0_output_1_heatmaps', 'stage_0_output_0_pafs']
    from lwop_jax.checkpoints.orbax_io import load_any  # jax (the [jax] extra)

    assert load_any(tmp_path / 'orbax').num_refinement_stages == 0
    import onnxruntime as ort

    full = ort.InferenceSession(str(overfit_onnx))  # the same checkpoint with all its stages
    assert len(full.get_outputs()) == 4  # so 0 stages is the flag's doing, not the file's own count
    # Both files hold the initial stage's weights; ONNX Runtime runs the same nodes on them.
    x = np.random.default_rng(0).normal(0, 0.25, (1, 3, 64, 96)).astype(np.float32)
    stage0 = ort.InferenceSession(str(tmp_path / 'stage0.onnx')).run(None, {'data': x})
    both = full.run(outputs, {'data': x})
    for a, b in zip(stage0, both):
        np.testing.assert_array_equal(a, b)


# -- lwop infer on an int8 OpenVINO IR ----------------------------------------------------------------------------


@pytest.mark.slow
def test_infer_runs_an_int8_openvino_ir(int8_all_heads, mini, tmp_path):
    int8_xml = int8_all_heads[1]
    poses = tmp_path / 'poses.json'
    result = lwop('infer', '--checkpoint-path', int8_xml, '--images', mini[1], '--json', poses, '--threads', 2,
                  cwd=tmp_path)  # fmt: skip
    assert f'model {int8_xml}: openvino, int8, coco18' in result.stdout
    payload = json.loads(poses.read_text())
    assert payload['precision'] == 'int8'
    found = [len(image['people']) for image in payload['images']]
    assert len(found) == 4 and all(found), found  # the int8 network finds people on every image
    assert sum(found) >= sum(MINI_PEOPLE) - 2, found  # the gate's agreement (0.99 here) leaves few to miss


# -- lwop evaluate --compare and --flip -----------------------------------------------------------------------


@pytest.mark.slow
def test_evaluate_compare_scores_both_models_side_by_side(overfit_onnx, int8_all_heads, mini, tmp_path):
    int8_xml = int8_all_heads[1]
    result = lwop('evaluate', '--labels', mini[0], '--images-folder', mini[1], '--checkpoint-path', overfit_onnx,
                  '--compare', int8_xml, '--threads', 2, '--no-progress', cwd=tmp_path)  # fmt: skip
    lines = result.stdout.splitlines()
    assert f'A: {overfit_onnx} (onnxruntime, fp32)' in lines and f'B: {int8_xml} (openvino, int8)' in lines
    ap = next(line.split() for line in lines if line.startswith('AP '))
    fp32 = coco_eval.evaluate_backend(load_backend(overfit_onnx, threads=2), *mini, progress=False)
    assert float(ap[1]) == pytest.approx(fp32.stats['AP'], abs=5e-4)  # A is the fp32 model's own evaluation
    people = re.search(r'people found: A (\d+), B (\d+), matched (\d+) \(4 images\)', result.stdout)
    assert people and int(people[1]) == len(fp32.detections), result.stdout
    agreement = float(re.search(r'keypoint agreement .*: ([0-9.]+)', result.stdout)[1])
    assert 0.5 <= agreement <= 1.0  # it passed the gate (0.5) on two of these images


@pytest.mark.slow
def test_evaluate_flip_averages_the_mirrored_maps(overfit_onnx, mini, tmp_path):
    stats_json, detections = tmp_path / 'stats.json', tmp_path / 'detections.json'
    lwop('evaluate', '--labels', mini[0], '--images-folder', mini[1], '--checkpoint-path', overfit_onnx, '--flip',
         '--threads', 2, '--no-progress', '--stats-json', stats_json, '--output-name', detections,
         cwd=tmp_path)  # fmt: skip
    record = json.loads(stats_json.read_text())
    assert record['flip'] is True
    backend = load_backend(overfit_onnx, threads=2)
    flipped = coco_eval.evaluate_backend(backend, *mini, flip=True, progress=False)
    plain = coco_eval.evaluate_backend(backend, *mini, flip=False, progress=False)
    # The command gives the flip evaluation, and that is not the single pass: the mirrored pass contributed.
    command = json.loads(detections.read_text())
    assert len(command) == len(flipped.detections)
    for a, b in zip(command, flipped.detections):
        assert a['image_id'] == b['image_id']
        np.testing.assert_allclose(a['keypoints'], b['keypoints'], atol=1e-3)
    assert record['stats'] == pytest.approx(flipped.stats, abs=1e-3)
    assert any(
        not np.allclose(a['keypoints'], b['keypoints'], atol=0.5) for a, b in zip(flipped.detections, plain.detections)
    )
