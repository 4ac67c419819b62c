"""COCO evaluation: parity with the original val.py (trained overfit model, decoder oracle), flip TTA, bad inputs.

Tolerances: the JAX backend must give the original's detections with keypoints within 1e-3 px and scores
within 1e-4, stats within 1e-3 (observed: keypoints identical, scores within 3.2e-5 of values around 100
to 600, stats identical). ONNX Runtime and OpenVINO (float32) run the same converted graph: keypoints
within 1e-3 px, scores within 1e-4 + 1e-6 relative (observed 2.1e-5 / 4.4e-5), stats within 1e-3
(observed identical).
"""

import importlib.util
import json
import random
import shutil

import cv2
import numpy as np
import pytest

from lwop_jax.cli import evaluate
from lwop_jax.errors import InputFileError
from lwop_jax.evaluation import ceiling, coco_eval, detect, subsets
from lwop_jax.inference import backends as runtime
from lwop_jax.skeleton import FLIP_KEYPOINTS, NUM_HEATMAPS, PAF_LIMBS

OVERFIT = 'lwop_overfit_coco4.pth'
MINI_JSON = 'person_keypoints_val2017_mini.json'
ORACLE_CASES = ('c000', 'c001', 'c002', 'c003')  # ids 785, 40083, 196141, 197388: the json's order


# ------------------------------------------------------------------------------------- fixtures
@pytest.fixture(scope='module')
def mini(coco_mini_dir):
    """(annotation json, images folder) of COCO mini."""
    return coco_mini_dir / MINI_JSON, coco_mini_dir / 'val2017'


@pytest.fixture(scope='module')
def original(reference_dir):
    """The original val.py's detections and stats for the overfit model, single scale."""
    detections = json.loads((reference_dir / 'overfit_detections_original.json').read_text())
    stats = json.loads((reference_dir / 'overfit_eval_original.json').read_text())['stats']
    return detections, stats


@pytest.fixture(scope='module')
def jax_backend(reference_dir):
    """One JAX backend for the module: its jit cache (one compile per input shape) is shared."""
    return runtime.load_backend(reference_dir / OVERFIT, 'jax')


def assert_detections_match(ours, reference, score_rtol=0.0):
    assert [d['image_id'] for d in ours] == [d['image_id'] for d in reference]
    for mine, theirs in zip(ours, reference):
        assert mine['category_id'] == theirs['category_id'] == 1
        np.testing.assert_allclose(mine['keypoints'], theirs['keypoints'], rtol=0, atol=1e-3)
        np.testing.assert_allclose(mine['score'], theirs['score'], rtol=score_rtol, atol=1e-4)


def assert_stats_match(stats, reference, atol=1e-3):
    assert list(stats) == list(coco_eval.STAT_NAMES)
    for name in coco_eval.STAT_NAMES:
        assert stats[name] == pytest.approx(reference[name], abs=atol), name


class ZeroBackend:
    """Stand-in network: all-zero maps of the right shape (nothing to detect)."""

    name = 'zeros'

    def __call__(self, images):
        n, h, w, _ = images.shape
        return np.zeros((n, h // 8, w // 8, NUM_HEATMAPS), np.float32), np.zeros((n, h // 8, w // 8, 38), np.float32)


class ReplayBackend:
    """Stand-in network that returns stored low-resolution maps in order, checking the input shape."""

    def __init__(self, outputs):
        self.outputs = list(outputs)  # [(expected input shape, heatmaps NHWC, pafs NHWC)]

    def __call__(self, images):
        expected, heatmaps, pafs = self.outputs.pop(0)
        assert images.shape == expected and images.dtype == np.float32
        return heatmaps, pafs


class PixelBackend:
    """Stand-in network that depends on the image non-symmetrically: a fixed random 1x1 projection of
    8x8-average-pooled pixels plus a left-to-right ramp, so a mirrored input gives different maps."""

    def __init__(self, seed=0):
        rng = np.random.default_rng(seed)
        self.weights = rng.normal(size=(3, NUM_HEATMAPS + 38)).astype(np.float32)

    def __call__(self, images):
        n, h, w, c = images.shape
        pooled = images.reshape(n, h // 8, 8, w // 8, 8, c).mean((2, 4))
        ramp = np.linspace(0, 1, w // 8, dtype=np.float32)[None, None, :, None]
        maps = np.tanh(pooled @ self.weights + ramp)
        return maps[..., :NUM_HEATMAPS], maps[..., NUM_HEATMAPS:]


# ------------------------------------------------------------------------ parity with the original
def test_jax_backend_matches_original_val(jax_backend, mini, original):
    result = coco_eval.evaluate_backend(jax_backend, *mini, progress=False)
    assert_detections_match(result.detections, original[0])
    assert_stats_match(result.stats, original[1])
    assert result.image_ids == [785, 40083, 196141, 197388] and result.note is None
    assert 'Average Precision  (AP) @[ IoU=0.50:0.95 | area=   all | maxDets= 20 ] = 0.761' in result.summary


def test_cli_onnxruntime_matches_original_val(overfit_onnx, mini, original, tmp_path, capsys):
    detections_json, stats_json = tmp_path / 'out' / 'detections.json', tmp_path / 'out' / 'stats.json'
    rc = evaluate.main(
        [
            '--labels',
            str(mini[0]),
            '--images-folder',
            str(mini[1]),
            '--checkpoint-path',
            str(overfit_onnx),
            '--output-name',
            str(detections_json),
            '--stats-json',
            str(stats_json),
            '--threads',
            '2',
            '--no-progress',
            '--ground-truth-ceiling',
        ]
    )
    out = capsys.readouterr().out
    assert rc == 0
    assert out.count('Average Precision') == 5 and out.count('Average Recall') == 5
    assert 'ground-truth ceiling (perfect stride-8 maps, single scale, same 4 images): AP 0.964' in out
    assert_detections_match(json.loads(detections_json.read_text()), original[0], score_rtol=1e-6)
    record = json.loads(stats_json.read_text())
    assert record['backend'] == 'onnxruntime' and record['num_images'] == 4 and record['num_detections'] == 12
    assert_stats_match(record['stats'], original[1])
    assert sorted(p.name for p in detections_json.parent.iterdir()) == ['detections.json', 'stats.json']


@pytest.mark.slow
def test_cli_multiscale_matches_the_originals_reported_ap(overfit_onnx, mini, tmp_path, capsys):
    """The reference README reports the original's --multiscale run: AP 0.679, 29 detections."""
    rc = evaluate.main(
        [
            '--labels',
            str(mini[0]),
            '--images-folder',
            str(mini[1]),
            '--checkpoint-path',
            str(overfit_onnx),
            '--multiscale',
            '--output-name',
            str(tmp_path / 'det.json'),
            '--stats-json',
            str(tmp_path / 'stats.json'),
            '--threads',
            '2',
            '--no-progress',
        ]
    )
    assert rc == 0, capsys.readouterr().err
    record = json.loads((tmp_path / 'stats.json').read_text())
    assert record['scales'] == [0.5, 1.0, 1.5, 2.0] and record['num_detections'] == 29
    assert record['stats']['AP'] == pytest.approx(0.679, abs=5e-4)


@pytest.mark.filterwarnings('ignore:os.fork')  # OpenVINO forks while compiling; JAX is loaded here
def test_openvino_matches_original_val(overfit_onnx, mini, original):
    backend = runtime.load_backend(overfit_onnx, 'openvino', threads=2)
    result = coco_eval.evaluate_backend(backend, *mini, progress=False)
    assert_detections_match(result.detections, original[0], score_rtol=1e-6)
    assert_stats_match(result.stats, original[1])


def test_decoder_oracle_through_upsampling_and_scoring(reference_dir, mini):
    """decode_reference.npz: the oracle low-res maps, fed as network outputs, give the original's detections
    and COCOeval stats (geometry, x8 upsampling, pad crop, resize, decode, COCO conversion, scoring)."""
    reference = np.load(reference_dir / 'decode_reference.npz')
    outputs = []
    for case in ORACLE_CASES:
        padded_hw = json.loads(str(reference[f'{case}_meta']))['padded_hw']
        outputs.append(
            (
                (1, *padded_hw, 3),
                reference[f'{case}_lowres_heatmaps'].transpose(0, 2, 3, 1),
                reference[f'{case}_lowres_pafs'].transpose(0, 2, 3, 1),
            )
        )
    result = coco_eval.evaluate_backend(ReplayBackend(outputs), *mini, progress=False)
    expected = json.loads(str(reference['coco_detections_oracle_json']))
    assert [d['image_id'] for d in result.detections] == [d['image_id'] for d in expected]
    for mine, theirs in zip(result.detections, expected):
        assert mine['keypoints'] == theirs['keypoints']
        assert mine['score'] == pytest.approx(theirs['score'], rel=1e-12)
    np.testing.assert_allclose(result.stats_list, reference['coco_cocoeval_stats_oracle'], rtol=0, atol=1e-12)


# ----------------------------------------------------------------------------------------- flip TTA
def test_ground_truth_ceiling_is_high_on_coco_and_drops_with_the_input_size(mini):
    """Perfect stride-8 maps of the 12 annotated people through the evaluation path: near-perfect AP at
    the val height 368 (the people are large); at a quarter of that the stride costs most of it."""
    full = ceiling.ground_truth_ceiling(*mini)
    small = ceiling.ground_truth_ceiling(*mini, base_height=92)
    assert full.image_ids == [785, 40083, 196141, 197388]
    assert len(full.detections) >= 12 and full.stats['AP50'] == 1.0
    assert 0.9 < full.stats['AP'] <= 1.0  # measured 0.964
    assert small.stats['AP'] < full.stats['AP'] - 0.2


def render_person(keypoints, height, width, sigma=4.0):
    """Ideal maps of one person on an (H, W) grid: a Gaussian per keypoint (background = 1 - max) and
    the unit vector of each training limb within 2 px of its segment. keypoints: (18, 2) (x, y)."""
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float64)
    heatmaps = np.zeros((height, width, NUM_HEATMAPS))
    for k, (x, y) in enumerate(keypoints):
        heatmaps[..., k] = np.exp(-((xs - x) ** 2 + (ys - y) ** 2) / (2 * sigma**2))
    heatmaps[..., -1] = 1 - heatmaps[..., :-1].max(-1)
    pafs = np.zeros((height, width, 38))
    for limb, (a, b) in enumerate(PAF_LIMBS):
        start, vector = keypoints[a], keypoints[b] - keypoints[a]
        length = np.linalg.norm(vector)
        along = ((xs - start[0]) * vector[0] + (ys - start[1]) * vector[1]) / length
        across = np.abs((xs - start[0]) * vector[1] - (ys - start[1]) * vector[0]) / length
        inside = (along >= 0) & (along <= length) & (across <= 2)
        pafs[inside, 2 * limb] = vector[0] / length
        pafs[inside, 2 * limb + 1] = vector[1] / length
    return heatmaps.astype(np.float32), pafs.astype(np.float32)


def mirror_person(keypoints, width):
    """The same person in the mirrored image: x -> W - 1 - x, and left/right labels swapped."""
    mirrored = np.empty_like(keypoints)
    for k, (x, y) in enumerate(keypoints):
        mirrored[FLIP_KEYPOINTS[k]] = (width - 1 - x, y)
    return mirrored


def test_unflip_turns_ideal_maps_of_the_mirror_into_the_image_maps():
    rng = np.random.default_rng(3)
    height, width = 48, 64
    person = rng.integers(4, [width - 4, height - 4], size=(18, 2)).astype(np.float64)
    heatmaps, pafs = render_person(person, height, width)
    unflipped = detect.unflip_maps(*render_person(mirror_person(person, width), height, width))
    np.testing.assert_allclose(unflipped[0], heatmaps, atol=1e-6)
    np.testing.assert_allclose(unflipped[1], pafs, atol=1e-6)
    assert np.abs(pafs).max() == pytest.approx(1.0)  # the test has limbs to check


def test_unflip_is_its_own_inverse():
    rng = np.random.default_rng(0)
    heatmaps, pafs = rng.normal(size=(5, 7, 19)).astype(np.float32), rng.normal(size=(5, 7, 38)).astype(np.float32)
    twice = detect.unflip_maps(*detect.unflip_maps(heatmaps, pafs))
    np.testing.assert_array_equal(twice[0], heatmaps)
    np.testing.assert_array_equal(twice[1], pafs)


def test_flip_averaged_maps_of_an_image_and_its_mirror_agree():
    """With flip, the image and its mirror run the same two passes: un-flipping the mirror's averaged maps
    must give the image's averaged maps exactly, whatever the network (here a non-symmetric stand-in)."""
    image = np.random.default_rng(1).integers(0, 256, size=(45, 70, 3), dtype=np.uint8)
    backend = PixelBackend()
    heatmaps, pafs = detect.infer_maps(backend, image, base_height=64, flip=True)
    mirror_maps = detect.infer_maps(backend, np.ascontiguousarray(image[:, ::-1]), base_height=64, flip=True)
    unflipped = detect.unflip_maps(*mirror_maps)
    np.testing.assert_array_equal(unflipped[0], heatmaps)
    np.testing.assert_array_equal(unflipped[1], pafs)
    plain = detect.infer_maps(backend, image, base_height=64)
    assert not np.allclose(plain[0], heatmaps)  # the flipped pass did contribute


def test_flip_evaluation_of_the_overfit_model(jax_backend, mini, original):
    result = coco_eval.evaluate_backend(jax_backend, *mini, flip=True, progress=False)
    print(
        f'flip TTA: AP {result.stats["AP"]:.4f} (single scale {original[1]["AP"]:.4f}), '
        f'{len(result.detections)} detections'
    )
    assert len(result.detections) == 12
    assert result.stats['AP'] > 0.7 and result.stats['AP50'] == pytest.approx(1.0)


# ---------------------------------------------------------------------------- degenerate results
def test_zero_detections_give_ap_zero_with_a_note(mini):
    result = coco_eval.evaluate_backend(ZeroBackend(), *mini, image_ids=[40083, 785], progress=False)
    assert result.detections == [] and result.image_ids == [785, 40083]
    # Only the evaluated images count: these two hold no medium-sized person, so APm and ARm are -1
    # (what COCOeval reports for an empty area range); the other stats are 0.
    assert result.stats_list == [0.0, 0.0, 0.0, -1.0, 0.0, 0.0, 0.0, 0.0, -1.0, 0.0]
    assert 'no detections' in result.note


def test_evaluate_model_is_quiet_and_returns_stats(reference_dir, mini, tmp_path, capsys):
    from lwop_jax.checkpoints import orbax_io

    model = orbax_io.load_any(reference_dir / OVERFIT)
    stats = coco_eval.evaluate_model(model, *mini, max_images=1, output_path=tmp_path / 'det.json')
    assert list(stats) == list(coco_eval.STAT_NAMES) and stats['AP'] > 0.5
    assert capsys.readouterr() == ('', '')
    assert {d['image_id'] for d in json.loads((tmp_path / 'det.json').read_text())} == {785}
    with pytest.raises(ValueError, match='eval mode'):
        coco_eval.evaluate_model(model.set_training(True), *mini, max_images=1)


# ---------------------------------------------------------------------------------- bad inputs
def run_cli(capsys, labels, images, checkpoint, *extra):
    rc = evaluate.main(
        [
            '--labels',
            str(labels),
            '--images-folder',
            str(images),
            '--checkpoint-path',
            str(checkpoint),
            '--no-progress',
            *map(str, extra),
        ]
    )
    return rc, capsys.readouterr()


def assert_one_line_error(rc, captured, *fragments):
    assert rc != 0
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith('error: '), captured.err
    for fragment in fragments:
        assert fragment in lines[0]


def write_labels(path, dataset):
    path.write_text(json.dumps(dataset))
    return path


def test_malformed_json_is_reported_with_file_and_problem(tmp_path):
    labels = tmp_path / 'broken.json'
    labels.write_text('{"images": [')
    with pytest.raises(InputFileError, match=r'broken.json: malformed JSON \(.* line 1 column 13\)'):
        coco_eval.load_annotations(labels)


def test_json_without_person_keypoints_is_rejected(tmp_path, mini):
    dataset = json.loads(mini[0].read_text())
    for category in dataset['categories']:
        del category['keypoints']
    with pytest.raises(InputFileError, match='no category with keypoints'):
        coco_eval.evaluate_backend(ZeroBackend(), write_labels(tmp_path / 'a.json', dataset), mini[1])
    with pytest.raises(InputFileError, match='not a COCO person keypoints file'):
        coco_eval.load_annotations(write_labels(tmp_path / 'b.json', [1, 2]))
    with pytest.raises(InputFileError, match='no "annotations" list'):
        coco_eval.load_annotations(write_labels(tmp_path / 'c.json', {'images': [], 'categories': []}))


def test_cli_bad_inputs(tmp_path, mini, overfit_onnx, capsys):
    dataset = json.loads(mini[0].read_text())
    rc, captured = run_cli(capsys, mini[0], mini[1], tmp_path / 'missing.pth')
    assert_one_line_error(rc, captured, 'missing.pth', 'not found')

    broken = tmp_path / 'broken.json'
    broken.write_text('{"images": [')
    rc, captured = run_cli(capsys, broken, mini[1], tmp_path / 'missing.pth')  # labels are checked first
    assert_one_line_error(rc, captured, 'broken.json', 'malformed JSON')

    no_keypoints = dict(
        dataset, annotations=[{k: v for k, v in a.items() if k != 'keypoints'} for a in dataset['annotations']]
    )
    rc, captured = run_cli(capsys, write_labels(tmp_path / 'nokp.json', no_keypoints), mini[1], overfit_onnx)
    assert_one_line_error(rc, captured, 'nokp.json', 'no annotation has keypoints')

    rc, captured = run_cli(capsys, mini[0], tmp_path / 'no_such_folder', overfit_onnx)
    assert_one_line_error(rc, captured, 'no_such_folder', 'images folder not found')


@pytest.fixture
def one_real_two_bad(tmp_path, mini):
    """Labels for 785 (present), 40083 (file missing) and 196141 (file corrupt)."""
    dataset = json.loads(mini[0].read_text())
    images = tmp_path / 'images'
    images.mkdir()
    shutil.copy(mini[1] / '000000000785.jpg', images)
    (images / '000000196141.jpg').write_bytes(b'\xff\xd8 not really a jpeg')
    dataset['images'] = dataset['images'][:3]
    return write_labels(tmp_path / 'labels.json', dataset), images


def test_missing_images_stop_the_run_with_the_list(one_real_two_bad, overfit_onnx, tmp_path, capsys):
    rc, captured = run_cli(capsys, *one_real_two_bad, overfit_onnx, '--output-name', tmp_path / 'det.json')
    assert_one_line_error(rc, captured, '1 of 3 images not found', '000000040083.jpg', '--skip-missing')
    assert not (tmp_path / 'det.json').exists()


def test_skip_missing_evaluates_the_rest_and_reports_skipped(one_real_two_bad, overfit_onnx, tmp_path, capsys):
    rc, captured = run_cli(
        capsys,
        *one_real_two_bad,
        overfit_onnx,
        '--skip-missing',
        '--output-name',
        tmp_path / 'det.json',
        '--stats-json',
        tmp_path / 'stats.json',
    )
    assert rc == 0, captured.err
    assert 'skipped 1 missing image(s)' in captured.err and '000000040083.jpg' in captured.err
    assert 'skipped 1 unreadable image(s)' in captured.err and '000000196141.jpg' in captured.err
    record = json.loads((tmp_path / 'stats.json').read_text())
    assert record['num_images'] == 1 and record['stats']['AP'] > 0.5  # scored on 785 alone
    assert {d['image_id'] for d in json.loads((tmp_path / 'det.json').read_text())} == {785}


# ---------------------------------------------------------------------------------- subset, visualize
def test_make_val_subset_follows_the_original(tmp_path, mini):
    dataset = json.loads(mini[0].read_text())
    subset = subsets.make_val_subset(mini[0], tmp_path / 'subset.json', num_images=2, seed=0)
    indices = list(range(len(dataset['images'])))
    random.seed(0)  # the original's recipe: global seed, shuffle, take the first N
    random.shuffle(indices)
    chosen = [dataset['images'][i] for i in indices[:2]]
    assert subset['images'] == chosen
    ids = [image['id'] for image in chosen]
    assert subset['annotations'] == sorted(
        (a for a in dataset['annotations'] if a['image_id'] in ids), key=lambda a: ids.index(a['image_id'])
    )
    assert json.loads((tmp_path / 'subset.json').read_text()) == subset
    assert [p.name for p in tmp_path.iterdir()] == ['subset.json']  # no temporary file left


@pytest.mark.skipif(
    importlib.util.find_spec('lwop_jax.inference.results') is None,
    reason='lwop_jax.inference.results (draw_poses) is not there yet',
)
def test_visualize_saves_drawn_images(mini, overfit_onnx, tmp_path, capsys):
    rc, captured = run_cli(
        capsys,
        *mini,
        overfit_onnx,
        '--max-images',
        1,
        '--visualize',
        tmp_path / 'vis',
        '--output-name',
        tmp_path / 'det.json',
    )
    assert rc == 0, captured.err
    drawn = cv2.imread(str(tmp_path / 'vis' / '000000000785.jpg'))
    assert drawn is not None and drawn.shape == cv2.imread(str(mini[1] / '000000000785.jpg')).shape


def test_cli_make_subset_writes_a_seeded_subset(tmp_path, coco_mini_dir):
    labels = coco_mini_dir / 'person_keypoints_val2017_mini.json'
    outputs = []
    for name, seed in (('a.json', 3), ('b.json', 3), ('c.json', 4)):
        assert (
            evaluate.main(
                [
                    '--labels',
                    str(labels),
                    '--make-subset',
                    '2',
                    '--seed',
                    str(seed),
                    '--output-name',
                    str(tmp_path / name),
                ]
            )
            == 0
        )
        outputs.append(json.loads((tmp_path / name).read_text()))
    ids = [sorted(image['id'] for image in subset['images']) for subset in outputs]
    assert len(ids[0]) == 2 and ids[0] == ids[1]
    for subset in outputs:
        assert {a['image_id'] for a in subset['annotations']} <= {image['id'] for image in subset['images']}
