"""The offline end-to-end demo (lwop demo --quick): every stage leaves its artefact.

One run of ``python -m lwop_jax demo --quick`` in a subprocess, from a folder outside the checkout (as CI
and users run it): tiny synthetic sets, a few training iterations through train_and_evaluate
(calibration call + resumed call), AP on the held-out set, ONNX export, infer with ONNX Runtime. About a
minute on 2 CPU cores. And one with ``--keypoint-schema figure`` (another minute): every stage in that
schema.
"""

import json
import os
import pathlib
import subprocess
import sys

import cv2
import onnx
import pytest

from lwop_jax.demo.run import demo_config
from lwop_jax.schema import load_schema

pytestmark = pytest.mark.slow  # one demo run, about a minute
PROJECT_ROOT = pathlib.Path(__file__).resolve().parents[1]
QUICK = demo_config(quick=True).demo  # the --quick settings (configs/demo.py)
STAT_NAMES = ['AP', 'AP50', 'AP75', 'APm', 'APl', 'AR', 'AR50', 'AR75', 'ARm', 'ARl']


def run_quick_demo(out, *options):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2')
    completed = subprocess.run(
        [sys.executable, '-m', 'lwop_jax', 'demo', '--quick', '--out', str(out), '--seed', '3', *options],
        check=False,
        cwd=out.parent,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    return out, completed.stdout


@pytest.fixture(scope='module')
def quick_run(tmp_path_factory):
    return run_quick_demo(tmp_path_factory.mktemp('demo') / 'run')


def test_synthetic_sets(quick_run):
    out, _ = quick_run
    for split, count in (('train', QUICK.num_train_images), ('val', QUICK.num_val_images)):
        labels = json.loads((out / 'data' / split / 'annotations.json').read_text())
        assert len(labels['images']) == count
        assert len(list((out / 'data' / split / 'images').glob('*.jpg'))) == count
    train = json.loads((out / 'data' / 'train' / 'annotations.json').read_text())
    val = json.loads((out / 'data' / 'val' / 'annotations.json').read_text())
    # Held out: different seeds give different people.
    assert [a['keypoints'] for a in train['annotations'][:3]] != [a['keypoints'] for a in val['annotations'][:3]]


def test_checkpoint_after_calibration_and_resume(quick_run):
    out, _ = quick_run
    steps = sorted(int(p.name) for p in (out / 'train' / 'checkpoints').iterdir() if p.name.isdigit())
    # quick: a short calibration call, then a resumed call up to min_train_steps
    assert QUICK.calibration_steps < QUICK.min_train_steps
    assert steps == [QUICK.calibration_steps, QUICK.min_train_steps]
    last = out / 'train' / 'checkpoints' / str(steps[-1])
    assert (last / 'model').is_dir() and (last / 'meta').is_dir()


def test_stats_json_has_the_ten_stats(quick_run):
    out, _ = quick_run
    record = json.loads((out / 'eval' / 'stats.json').read_text())
    assert record['stats_order'] == STAT_NAMES
    assert list(record['stats']) == STAT_NAMES and len(record['stats_list']) == 10
    assert all(-1 <= v <= 1 for v in record['stats_list'])
    assert record['num_images'] == QUICK.num_val_images and record['base_height'] == QUICK.eval_base_height
    assert isinstance(json.loads((out / 'eval' / 'detections.json').read_text()), list)
    flip = json.loads((out / 'eval' / 'flip_stats.json').read_text())  # demo.flip_test
    assert flip['flip'] and not record['flip'] and list(flip['stats']) == STAT_NAMES
    summary = json.loads((out / 'demo_summary.json').read_text())
    assert summary['flip_test_ap'] == flip['stats']['AP']


def test_onnx_model_runs(quick_run):
    import numpy as np
    import onnxruntime as ort

    out, _ = quick_run
    session = ort.InferenceSession(str(out / 'lwop_demo.onnx'), providers=['CPUExecutionProvider'])
    outputs = session.run(None, {session.get_inputs()[0].name: np.zeros((1, 3, 64, 96), np.float32)})
    assert outputs[-2].shape == (1, 19, 8, 12) and outputs[-1].shape == (1, 38, 8, 12)


def test_infer_outputs(quick_run):
    out, _ = quick_run
    payload = json.loads((out / 'infer' / 'poses.json').read_text())
    assert len(payload['keypoint_names']) == 18 and payload['backend'] == 'onnxruntime'
    assert payload['model'].endswith('lwop_demo.onnx') and payload['height_size'] == QUICK.eval_base_height
    images = payload['images']
    assert len(images) == QUICK.num_infer_images
    for entry in images:
        assert set(entry) == {'file', 'height', 'width', 'people'}
        assert (entry['height'], entry['width']) == (QUICK.image_height, QUICK.image_width)
        for person in entry['people']:
            assert len(person['keypoints']) == 18 and all(len(k) == 3 for k in person['keypoints'])
            assert set(person) == {'keypoints', 'score', 'num_keypoints', 'bbox', 'track_id'}
        drawn = cv2.imread(str(out / 'infer' / pathlib.Path(entry['file']).name))
        assert drawn is not None and drawn.shape == (QUICK.image_height, QUICK.image_width, 3)
    picture = cv2.imread(str(out / 'demo_result.jpg'))
    assert picture is not None and picture.shape[1] <= 640


def test_summary_names_ap_and_folder(quick_run):
    out, stdout = quick_run
    last = stdout.strip().splitlines()[-1]
    assert last.startswith('Held-out AP ') and 'iterations' in last
    assert f'Everything is in {out}/' in stdout
    summary = json.loads((out / 'demo_summary.json').read_text())
    assert summary['quick'] and summary['training']['iterations'] == QUICK.min_train_steps
    assert (summary['keypoint_schema'], summary['num_keypoints'], summary['data_skeleton']) == ('coco18', 18, 'coco17')
    assert summary['ap'] == summary['stats']['AP']
    # Perfect maps on the held-out set score well above an untrained network (and within [0, 1]).
    assert summary['ap'] <= summary['ground_truth_ceiling_ap'] <= 1 and summary['ground_truth_ceiling_ap'] > 0.5
    assert set(summary['stage_seconds']) == {'data', 'train', 'eval', 'export', 'infer'}


def test_figure_schema_runs_every_stage(tmp_path):
    """--keypoint-schema figure: data in the figure skeleton, the figure schema trained, evaluated (the
    dataset's 16 keypoints, ceiling included), exported and run: 17 keypoints per person."""
    schema = load_schema('figure')
    out, stdout = run_quick_demo(tmp_path / 'figure', '--keypoint-schema', 'figure')
    assert 'keypoint schema figure (17 keypoints)' in stdout
    category = json.loads((out / 'data' / 'val' / 'annotations.json').read_text())['categories'][0]
    assert category['name'] == 'figure' and len(category['keypoints']) == 16
    summary = json.loads((out / 'demo_summary.json').read_text())
    assert (summary['keypoint_schema'], summary['num_keypoints'], summary['data_skeleton']) == ('figure', 17, 'figure')
    assert summary['config']['keypoint_schema'] == 'figure'
    assert summary['training']['iterations'] == QUICK.min_train_steps
    assert 0 <= summary['ap'] <= summary['ground_truth_ceiling_ap'] <= 1 and summary['ground_truth_ceiling_ap'] > 0.5
    for detection in json.loads((out / 'eval' / 'detections.json').read_text()):
        assert len(detection['keypoints']) == 3 * 16  # in the dataset's keypoints
    stored = {p.key: p.value for p in onnx.load(str(out / 'lwop_demo.onnx')).metadata_props}
    assert json.loads(stored['lwop_jax.keypoint_schema'])['name'] == 'figure'
    payload = json.loads((out / 'infer' / 'poses.json').read_text())
    assert payload['keypoint_schema'] == 'figure' and payload['keypoint_names'] == list(schema.keypoints)
    assert len(payload['images']) == QUICK.num_infer_images
    for entry in payload['images']:
        for person in entry['people']:
            assert len(person['keypoints']) == 17 and all(len(k) == 3 for k in person['keypoints'])


def test_a_schema_the_demo_has_no_data_for_is_one_line(tmp_path):
    completed = subprocess.run(
        [sys.executable, '-m', 'lwop_jax', 'demo', '--keypoint-schema', 'body25', '--out', str(tmp_path / 'run')],
        check=False,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert completed.returncode == 1
    assert completed.stderr.strip().splitlines() == [
        'error: --keypoint-schema body25: the demo trains coco18, coco17, figure (a shipped schema with synthetic '
        'data of its keypoints); other schemas train with lwop train on their own data'
    ]
    assert not (tmp_path / 'run').exists()
