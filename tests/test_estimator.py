"""PoseEstimator on the trained reference model, results formats, tracking and smoothing."""

import subprocess
import sys

import cv2
import numpy as np
import pytest

from lwop_jax.errors import InputFileError
from lwop_jax.inference import decode
from lwop_jax.inference.estimator import PoseEstimator
from lwop_jax.inference.media import as_bgr8
from lwop_jax.inference.results import PoseResult, bounding_boxes, draw_poses
from lwop_jax.inference.tracking import OneEuroFilter, PoseTracker, track_poses
from lwop_jax.skeleton import INTERNAL_TO_COCO, POSE_VARS

EXPECTED_PEOPLE = [1, 2, 3, 5]  # the original demo path, images in sorted file-name order


# ------------------------------------------------------------------------------------------------
# Fixtures: the trained checkpoint, converted once, and the four mini images
# ------------------------------------------------------------------------------------------------


@pytest.fixture(scope='module')
def checkpoint(reference_dir):
    return reference_dir / 'lwop_overfit_coco4.pth'


@pytest.fixture(scope='module')
def ort_estimator(checkpoint, model_cache):
    """Converts the .pth to ONNX on the fly (jax2onnx, cached) and opens it with ONNX Runtime."""
    return PoseEstimator(checkpoint, 'onnxruntime', threads=2)


@pytest.fixture(scope='module')
def onnx_path(overfit_onnx, ort_estimator):
    return overfit_onnx  # the cached file the estimator made


@pytest.fixture(scope='module')
def images(coco_mini_dir):
    paths = sorted((coco_mini_dir / 'val2017').glob('*.jpg'))
    assert len(paths) == 4
    return [cv2.imread(str(p), cv2.IMREAD_COLOR) for p in paths]


def assert_same_people(ours, theirs, atol=1.0):
    assert len(ours) == len(theirs)
    np.testing.assert_array_equal(ours.keypoints[..., 2] > 0, theirs.keypoints[..., 2] > 0)
    np.testing.assert_allclose(ours.keypoints[..., :2], theirs.keypoints[..., :2], atol=atol)


# ------------------------------------------------------------------------------------------------
# The estimator on real images
# ------------------------------------------------------------------------------------------------


def test_onnxruntime_finds_the_original_demo_poses(ort_estimator, images):
    results = [ort_estimator(image) for image in images]
    assert [len(r) for r in results] == EXPECTED_PEOPLE
    for image, result in zip(images, results):
        assert result.image_size == image.shape[:2] and result.track_ids is None
        found = result.keypoints[..., 2] > 0
        xy = result.keypoints[..., :2]
        # Found keypoints lie in the image up to the pad (a map pixel at x = 0 of 197388 maps to
        # x = -3 px of pad / scale 0.65 = -4.6, as in the original), missing ones are (-1, -1, 0).
        margin = 8
        assert (xy[found] >= -margin).all() and (xy[found] < np.array(image.shape[1::-1]) + margin).all()
        assert (result.keypoints[~found] == (-1, -1, 0)).all()
        assert (result.num_keypoints >= 3).all()


def test_every_backend_finds_the_same_people(checkpoint, onnx_path, ort_estimator, images):
    reference = [ort_estimator(image) for image in images]
    others = [PoseEstimator(onnx_path, 'openvino', threads=2), PoseEstimator(checkpoint, 'jax')]
    for estimator in others:
        for image, expected in zip(images, reference):
            assert_same_people(estimator(image), expected)


def test_batch_matches_single_calls(ort_estimator, images):
    # 40083 and 196141 both give 256x384 inputs: they go through the network as one batch.
    batched = ort_estimator.batch(images)
    for image, result in zip(images, batched):
        assert_same_people(result, ort_estimator(image), atol=1e-3)


def test_input_conversions(ort_estimator, images):
    image = images[0]
    expected = ort_estimator(image)
    assert_same_people(ort_estimator(cv2.cvtColor(image, cv2.COLOR_BGR2BGRA)), expected, atol=0)
    assert_same_people(ort_estimator(image.astype(np.uint16) * 257), expected, atol=0)
    gray = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    gray_result = ort_estimator(gray)
    assert_same_people(ort_estimator(gray[..., None]), gray_result, atol=0)
    np.testing.assert_array_equal(as_bgr8(gray), cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR))
    assert len(ort_estimator(np.zeros((1, 1, 3), np.uint8))) == 0


def test_bad_inputs_raise_one_readable_error(ort_estimator):
    for bad, message in [
        (np.zeros((8, 8, 3), np.float32), 'float images'),
        (np.zeros((0, 5, 3), np.uint8), 'empty'),
        (np.zeros((8, 8, 2), np.uint8), '2 channels'),
        (np.zeros((2, 8, 8, 3), np.uint8), 'must be'),
        (np.zeros((4, 4000, 3), np.uint8), 'wider than'),
        (None, 'None'),
    ]:
        with pytest.raises(InputFileError, match=message) as info:
            ort_estimator(bad)
        assert '\n' not in str(info.value)


def test_huge_image_is_resized_to_the_net_height(ort_estimator, images):
    image = images[0]  # 640x425, one person
    scale = 8000 / image.shape[1]
    huge = cv2.resize(image, (8000, round(image.shape[0] * scale)), interpolation=cv2.INTER_LINEAR)
    result = ort_estimator(huge)
    expected = ort_estimator(image)
    assert len(result) == len(expected) == 1
    # The network sees almost the same 256-high input, so the people agree up to the scale.
    found = (result.keypoints[0, :, 2] > 0) & (expected.keypoints[0, :, 2] > 0)
    assert found.sum() >= 15
    error = np.abs(result.keypoints[0, found, :2] / scale - expected.keypoints[0, found, :2])
    assert np.median(error) < 2.0


def test_onnxruntime_inference_imports_neither_jax_nor_tensorflow(onnx_path, coco_mini_dir):
    image = sorted((coco_mini_dir / 'val2017').glob('*.jpg'))[0]
    code = (
        'import sys, cv2\n'
        'from lwop_jax import PoseEstimator\n'
        'import lwop_jax.inference.results, lwop_jax.inference.tracking\n'
        f'estimator = PoseEstimator({str(onnx_path)!r}, "onnxruntime", threads=1, track=True, smooth=True)\n'
        f'result = estimator(cv2.imread({str(image)!r}))\n'
        'assert len(result) == 1, len(result)\n'
        'result.to_coco(1), result.to_openpose(), result.to_json(), result.draw(cv2.imread('
        f'{str(image)!r}))\n'
        'import lwop_jax.cli.infer, lwop_jax.cli.main\n'
        'bad = [m for m in sys.modules if m.split(".")[0] in ("jax", "jaxlib", "tensorflow", "flax")]\n'
        'assert not bad, bad\n'
    )
    subprocess.run([sys.executable, '-c', code], check=True, cwd=onnx_path.parent, timeout=120)


# ------------------------------------------------------------------------------------------------
# Results formats and drawing, on a hand-made result
# ------------------------------------------------------------------------------------------------


def hand_made_result():
    keypoints = np.full((2, 18, 3), -1, np.float32)
    keypoints[..., 2] = 0
    # Person 0: nose, neck, right shoulder + elbow, left shoulder. Person 1: three points.
    keypoints[0, [0, 1, 2, 3, 5]] = [[50.2, 20.7, 0.9], [50, 40, 0.8], [30, 40, 0.7], [25, 70, 0.6], [70.9, 40.1, 0.5]]
    keypoints[1, [8, 9, 10]] = [[150, 100, 0.4], [152, 140, 0.3], [149.5, 180.2, 0.2]]
    return PoseResult.from_keypoints(keypoints, scores=[7.5, 2.0], image_size=(200, 220), num_keypoints=[5, 3])


def test_boxes_are_the_original_bounding_rect():
    result = hand_made_result()
    for person, box in zip(result.keypoints, result.boxes):
        found = person[person[:, 2] > 0, :2].astype(np.int32)  # the original's int keypoints
        assert tuple(box) == cv2.boundingRect(found)
    assert tuple(bounding_boxes(np.zeros((1, 18, 3)))[0]) == (0, 0, 0, 0)


def test_to_coco_matches_the_val_py_conversion():
    result = hand_made_result()
    entries = result.to_coco(image_id=785)
    poses = decode.Poses(keypoints=result.keypoints, scores=result.scores, num_keypoints=result.num_keypoints)
    keypoints, scores = decode.to_coco_keypoints(poses)
    assert len(entries) == 2
    for entry, row, score in zip(entries, keypoints, scores):
        assert entry['image_id'] == 785 and entry['category_id'] == 1
        np.testing.assert_allclose(entry['keypoints'], row)
        assert entry['score'] == pytest.approx(score)
    assert entries[0]['score'] == pytest.approx(7.5 * 4) and entries[1]['score'] == pytest.approx(4.0)
    right_shoulder = INTERNAL_TO_COCO[2] * 3  # COCO index 6
    assert entries[0]['keypoints'][right_shoulder : right_shoulder + 3] == [30.5, 40.5, 1]
    assert entries[0]['keypoints'][3 * 3 : 3 * 3 + 3] == [0, 0, 0]  # left ear: missing


def test_to_openpose_and_to_json():
    result = hand_made_result()
    openpose = result.to_openpose()
    assert openpose['version'] == 1.3 and len(openpose['people']) == 2
    flat = openpose['people'][0]['pose_keypoints_2d']
    assert len(flat) == 54
    assert flat[:3] == pytest.approx([50.2, 20.7, 0.9]) and flat[4 * 3 : 4 * 3 + 3] == [0, 0, 0]

    people = result.to_json()
    assert [p['track_id'] for p in people] == [None, None]
    assert people[0]['keypoints'][4] == [-1, -1, 0] and len(people[0]['keypoints']) == 18
    assert people[1]['keypoints'][10] == pytest.approx([149.5, 180.2, 0.2])
    assert people[0]['score'] == 7.5 and people[1]['bbox'] == [149, 100, 4, 81]


def test_draw_changes_pixels_on_limbs_only():
    result = hand_made_result()
    image = np.full((200, 220, 3), 40, np.uint8)
    drawn = result.draw(image)
    assert (image == 40).all()  # the input is left alone
    assert (drawn[55, 27] != 40).any()  # on the elbow-shoulder limb
    assert (drawn[160, 151] != 40).any()  # on the knee-ankle limb
    assert (drawn[190, 10] == 40).all()  # far from everyone
    tracked = draw_poses(image, result.keypoints, track_ids=[3, 4])
    assert (tracked[80:100, 145:200] != drawn[80:100, 145:200]).any()  # 'id: 4' above the box


# ------------------------------------------------------------------------------------------------
# Tracking
# ------------------------------------------------------------------------------------------------


def person(x, y, scale=1.0):
    """A standing person (18 keypoints, all found) with its neck at (x, y)."""
    offsets = np.array(
        [
            [0, -20],
            [0, 0],
            [-15, 0],
            [-20, 25],
            [-22, 50],
            [15, 0],
            [20, 25],
            [22, 50],
            [-10, 60],
            [-11, 100],
            [-12, 140],
            [10, 60],
            [11, 100],
            [12, 140],
            [-5, -25],
            [5, -25],
            [-9, -22],
            [9, -22],
        ],
        np.float64,
    )
    keypoints = np.ones((18, 3))
    keypoints[:, :2] = offsets * scale + (x, y)
    return keypoints


def frame(people, scores):
    return PoseResult.from_keypoints(np.array(people).reshape(-1, 18, 3), scores, (480, 640))


def test_ids_are_stable_new_people_get_new_ids_and_ids_are_not_reused():
    tracker = PoseTracker()
    first = tracker(frame([person(100, 100), person(400, 120)], [10.0, 20.0]))
    assert first.track_ids.tolist() == [1, 0]  # the confident one is visited first
    second = tracker(frame([person(403, 118), person(98, 102)], [19.0, 11.0]))
    assert second.track_ids.tolist() == [0, 1]
    third = tracker(frame([person(100, 104), person(405, 118), person(250, 300)], [9, 18, 12.0]))
    assert third.track_ids.tolist() == [1, 0, 2]
    fourth = tracker(frame([person(405, 120), person(250, 302)], [18, 12.0]))
    assert fourth.track_ids.tolist() == [0, 2]
    fifth = tracker(frame([person(101, 104), person(405, 120)], [9, 18]))  # 1 left and came back
    assert fifth.track_ids.tolist() == [3, 0]
    tracker.reset()
    assert tracker(frame([person(100, 100)], [1.0])).track_ids.tolist() == [0]


def test_confident_pose_takes_the_match_first():
    previous = track_poses(None, frame([person(200, 200)], [5.0]))
    assert previous.track_ids.tolist() == [0]
    # Both are close to the previous person; the more confident one inherits its id.
    current = track_poses(previous, frame([person(200, 200), person(203, 202)], [4.0, 9.0]))
    assert current.track_ids.tolist() == [1, 0]


def test_tracking_matches_a_transcription_of_the_original():
    """ids from the original's get_similarity / track_poses loops (smooth off), written out here
    on int keypoints, versus ours on the same int-valued keypoints, over a random crowd."""
    rng = np.random.default_rng(0)

    def original_ids(frames):
        last_id, previous, all_ids = -1, [], []
        for keypoints, scores in frames:
            current = []
            for kpts, score in zip(keypoints, scores):
                kpts = kpts[:, :2].astype(np.int32)  # missing: -1
                found = kpts[kpts[:, 0] != -1]
                current.append({'kpts': kpts, 'conf': score, 'bbox': cv2.boundingRect(found), 'id': None})
            mask = np.ones(len(previous), np.int32)
            for pose in sorted(current, key=lambda p: p['conf'], reverse=True):
                best_iou, best_id, best_index = 0, None, None
                for index, old in enumerate(previous):
                    if not mask[index]:
                        continue
                    similar = 0
                    for k in range(18):
                        if pose['kpts'][k, 0] != -1 and old['kpts'][k, 0] != -1:
                            distance = np.sum((pose['kpts'][k] - old['kpts'][k]) ** 2)
                            area = max(pose['bbox'][2] * pose['bbox'][3], old['bbox'][2] * old['bbox'][3])
                            if np.exp(-distance / (2 * (area + np.spacing(1)) * POSE_VARS[k])) > 0.5:
                                similar += 1
                    if similar > best_iou:
                        best_iou, best_id, best_index = similar, old['id'], index
                if best_iou >= 3:
                    mask[best_index] = 0
                else:
                    best_id = None
                if best_id is None:
                    last_id += 1
                    best_id = last_id
                pose['id'] = best_id
            previous = current
            all_ids.append([p['id'] for p in current])
        return all_ids

    centres = rng.uniform([50, 50], [600, 400], size=(6, 2))
    frames = []
    for _ in range(12):
        centres = np.clip(centres + rng.normal(0, 6, centres.shape), 60, None)
        present = rng.random(len(centres)) > 0.2
        people = [person(*c, scale=rng.uniform(0.5, 1.2)) for c in centres[present]]
        keypoints = np.trunc(np.array(people).reshape(-1, 18, 3))
        keypoints[..., 2] = rng.random(keypoints.shape[:2]) > 0.25
        keypoints[keypoints[..., 2] == 0] = (-1, -1, 0)
        frames.append((keypoints, rng.integers(1, 4, len(keypoints)).astype(float)))  # with ties
    tracker = PoseTracker()
    ours = [tracker(PoseResult.from_keypoints(k, s, (480, 640))).track_ids.tolist() for k, s in frames]
    assert ours == original_ids(frames)
    assert max(max(ids) for ids in ours if ids) >= 6  # some people were lost and re-found


def test_one_euro_filter_is_the_original_and_smoothing_reduces_jitter():
    def original_filter(values, freq=60, mincutoff=1, beta=0.05, dcutoff=1):
        def alpha(rate, cutoff):
            tau, te = 1 / (2 * np.pi * cutoff), 1 / rate
            return 1 / (1 + tau / te)

        out, x_prev, dx_prev, x_hat = [], None, None, None
        for x in values:
            dx = 0 if x_prev is None else (x - x_prev) * freq
            dx_prev = dx if dx_prev is None else alpha(freq, dcutoff) * dx + (1 - alpha(freq, dcutoff)) * dx_prev
            a = alpha(freq, mincutoff + beta * abs(dx_prev))
            x_hat = x if x_hat is None else a * x + (1 - a) * x_hat
            x_prev = x
            out.append(x_hat)
        return out

    rng = np.random.default_rng(1)
    values = 100 + np.cumsum(rng.normal(0, 1, 40))
    filter_ = OneEuroFilter()
    np.testing.assert_allclose([filter_(np.array([v]))[0] for v in values], original_filter(values))

    noisy = [frame([person(300 + rng.normal(0, 3), 200 + rng.normal(0, 3))], [5.0]) for _ in range(40)]
    raw = np.array([f.keypoints[0, :, 0] for f in noisy])
    smoothing = PoseTracker(smooth=True)
    smoothed = [smoothing(f) for f in noisy][10:]
    tracked = np.array([r.keypoints[0, :, 0] for r in smoothed])
    assert all(r.track_ids.tolist() == [0] for r in smoothed)
    assert tracked.std(axis=0).mean() < 0.5 * raw[10:].std(axis=0).mean()
    assert np.abs(tracked.mean(axis=0) - raw[10:].mean(axis=0)).max() < 2  # no drift
