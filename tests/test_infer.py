"""infer.py end to end: images (folders, globs, bad files, unusual formats) and a tracked video."""

import json
import os
import shutil

import cv2
import numpy as np
import pytest

from lwop_jax.cli import infer
from lwop_jax.inference import estimator as estimator_module
from lwop_jax.inference.backends import load_backend
from lwop_jax.skeleton import KEYPOINT_NAMES


@pytest.fixture(scope='module')
def model(overfit_onnx):
    """The trained checkpoint as ONNX (converted once per session, see conftest)."""
    return str(overfit_onnx)


@pytest.fixture(scope='module')
def mini_images(coco_mini_dir):
    return sorted((coco_mini_dir / 'val2017').glob('*.jpg'))


def run(model, capfd, *args):
    """main([...]) -> (exit status, stderr lines)."""
    status = infer.main(['--checkpoint-path', model, '--threads', '2', *map(str, args)])
    return status, [line for line in capfd.readouterr().err.splitlines() if line.strip()]


def test_folder_glob_and_bad_files(model, mini_images, tmp_path, capfd):
    folder, other = tmp_path / 'folder', tmp_path / 'other'
    folder.mkdir()
    other.mkdir()
    for path in mini_images[:2]:
        shutil.copy(path, folder)
    (folder / 'notes.txt').write_text('a folder contributes only its image files')
    shutil.copy(mini_images[2], other)
    (tmp_path / 'text.jpg').write_text('not an image')
    (tmp_path / 'empty.png').write_bytes(b'')
    missing = tmp_path / 'missing.jpg'
    (tmp_path / 'no_images').mkdir()
    out, json_path = tmp_path / 'drawn', tmp_path / 'poses.json'

    status, errors = run(
        model,
        capfd,
        '--images',
        folder,
        other / '*.jpg',
        missing,
        tmp_path / 'text.jpg',
        tmp_path / 'empty.png',
        tmp_path / 'nothing*.png',
        tmp_path / 'no_images',
        '--json',
        json_path,
        '--output-dir',
        out,
        '--cpu',
    )
    assert status == 1
    assert len(errors) == 5, errors
    for name, reason in [
        ('missing.jpg', 'not found'),
        ('text.jpg', 'not an image'),
        ('empty.png', 'empty'),
        ('nothing*.png', 'no files match'),
        ('no_images', 'no image files'),
    ]:
        assert any(name in line and reason in line for line in errors), (name, errors)

    payload = json.loads(json_path.read_text())
    assert payload['keypoint_names'] == list(KEYPOINT_NAMES)
    images = payload['images']
    assert [os.path.basename(i['file']) for i in images] == [p.name for p in mini_images[:3]]
    assert images[2]['file'] == str(other / mini_images[2].name)  # the path as given
    assert [len(i['people']) for i in images] == [1, 2, 3]
    person = images[0]['people'][0]
    assert (images[0]['height'], images[0]['width']) == (425, 640)
    assert len(person['keypoints']) == 18 and person['track_id'] is None
    assert all(len(k) == 3 and all(isinstance(v, float) for v in k) for k in person['keypoints'])
    assert len(person['bbox']) == 4 and person['score'] > 0
    drawn = sorted(p.name for p in out.iterdir())
    assert drawn == [p.name for p in mini_images[:3]]
    original = cv2.imread(str(mini_images[0]))
    assert (cv2.imread(str(out / mini_images[0].name)).astype(int) - original).any()
    assert not list(tmp_path.glob('.*.tmp'))  # no leftovers


def test_unusual_image_formats(model, mini_images, tmp_path, capfd):
    bgr = cv2.imread(str(mini_images[1]))
    files = {
        'gray.png': cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY),
        'rgba.png': cv2.cvtColor(bgr, cv2.COLOR_BGR2BGRA),
        'deep.png': bgr.astype(np.uint16) * 257,
        'dot.png': np.full((1, 1, 3), 128, np.uint8),
        'plain.png': bgr,
    }
    for name, image in files.items():
        assert cv2.imwrite(str(tmp_path / name), image)
    json_path = tmp_path / 'poses.json'
    status, errors = run(model, capfd, '--images', *(tmp_path / n for n in files), '--json', json_path)
    assert status == 0 and errors == []
    images = {os.path.basename(i['file']): i for i in json.loads(json_path.read_text())['images']}
    assert images['dot.png']['people'] == [] and images['dot.png']['width'] == 1
    assert len(images['gray.png']['people']) >= 1
    # Alpha is dropped and 16 bits become the same 8 bits: the very same people.
    for name in ('rgba.png', 'deep.png'):
        assert images[name]['people'] == images['plain.png']['people']


def make_video(path, image, frames=6, step=3):
    """The image shifted right by ``step`` px per frame (edge pixels repeated), mp4v."""
    height, width = image.shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*'mp4v'), 10, (width, height))
    assert writer.isOpened()
    for t in range(frames):
        shift = np.float32([[1, 0, step * t], [0, 1, 0]])
        writer.write(cv2.warpAffine(image, shift, (width, height), borderMode=cv2.BORDER_REPLICATE))
    writer.release()


def test_video_is_tracked_and_annotated(model, mini_images, tmp_path, capfd):
    video = tmp_path / 'skiers.mp4'
    make_video(video, cv2.imread(str(mini_images[3])))  # 5 people
    out, json_path = tmp_path / 'out', tmp_path / 'video.json'
    status, errors = run(model, capfd, '--video', video, '--output-dir', out, '--json', json_path)
    assert status == 0 and errors == []

    payload = json.loads(json_path.read_text())
    frames = payload['frames']
    assert [f['index'] for f in frames] == list(range(6))
    assert (payload['height'], payload['width']) == (392, 640)
    ids = [[p['track_id'] for p in f['people']] for f in frames]
    assert all(isinstance(i, int) for frame_ids in ids for i in frame_ids)
    assert sorted(ids[0]) == list(range(len(ids[0]))) and len(ids[0]) >= 4
    # The same skiers move by 3 px a frame: most of them keep their ids to the end.
    assert len(set(ids[0]) & set(ids[-1])) >= len(ids[0]) - 1
    for frame_ids in ids:
        assert len(set(frame_ids)) == len(frame_ids)

    annotated = out / 'skiers_poses.mp4'
    capture = cv2.VideoCapture(str(annotated))
    count = 0
    while capture.read()[0]:
        count += 1
    capture.release()
    assert count == 6
    assert sorted(p.name for p in out.iterdir()) == ['skiers_poses.mp4']  # temp file renamed


def test_bad_videos(model, tmp_path, capfd):
    not_video = tmp_path / 'notes.mp4'
    not_video.write_text('not a video')
    json_path = tmp_path / 'video.json'
    status, errors = run(model, capfd, '--video', not_video, '--json', json_path)
    assert status == 1 and len(errors) == 1 and 'notes.mp4' in errors[0]
    assert json.loads(json_path.read_text())['frames'] == []
    status, errors = run(model, capfd, '--video', tmp_path / 'missing.mp4')
    assert status == 1 and errors == [f'error: {tmp_path / "missing.mp4"}: file not found']


def test_bad_model_is_one_line(tmp_path, capfd):
    status, errors = run(str(tmp_path / 'missing.onnx'), capfd, '--images', tmp_path)
    assert status == 1 and len(errors) == 1 and 'missing.onnx' in errors[0]


def test_pipelined_video_is_the_sequential_one(model, mini_images, tmp_path, capfd):
    """Reading, the network and decoding overlap by default: the same records, tracked ids and smoothed
    keypoints included, as --no-pipeline, and the same annotated video."""
    video = tmp_path / 'skiers.mp4'
    make_video(video, cv2.imread(str(mini_images[3])), frames=8, step=5)
    payloads, videos = {}, {}
    for name, flags in (('pipelined', []), ('sequential', ['--no-pipeline'])):
        out, json_path = tmp_path / name, tmp_path / f'{name}.json'
        status, errors = run(model, capfd, '--video', video, '--output-dir', out, '--json', json_path, *flags)
        assert status == 0 and errors == []
        payloads[name] = json.loads(json_path.read_text())
        capture, frames = cv2.VideoCapture(str(out / 'skiers_poses.mp4')), []
        while (read := capture.read())[0]:
            frames.append(read[1])
        capture.release()
        videos[name] = np.stack(frames)
    assert payloads['pipelined'] == payloads['sequential']
    frames = payloads['pipelined']['frames']
    assert [f['index'] for f in frames] == list(range(8))
    assert all(p['track_id'] is not None for f in frames for p in f['people']) and len(frames[0]['people']) >= 4
    np.testing.assert_array_equal(videos['pipelined'], videos['sequential'])


BATCH_ATOL_PX = 1e-3  # measured: 0 (ORT and OpenVINO, batches of 2-4 at 256x384); other CPUs may differ in last bits


class RecordingBackend:
    """The real backend, recording the batch dimension of every network call it gets."""

    def __init__(self, backend):
        self.backend = backend
        self.batch_sizes: list[int] = []

    def __call__(self, images):
        self.batch_sizes.append(images.shape[0])
        return self.backend(images)

    def __getattr__(self, name):
        return getattr(self.backend, name)


@pytest.fixture
def recorded_backends(monkeypatch):
    """Every backend that a PoseEstimator opens from now on, wrapped in a RecordingBackend (listed here)."""
    opened = []

    def load_and_record(*args, **kwargs):
        opened.append(RecordingBackend(load_backend(*args, **kwargs)))
        return opened[-1]

    monkeypatch.setattr(estimator_module, 'load_backend', load_and_record)
    return opened


# Network calls per run of the folder below: a chunk of N files is read at a time and its good images of
# one padded size (1 and 2: 256x384) go through the network in one call, in order of first appearance;
# 0 and 3 have sizes of their own. Files 00-08 hold images [1, 2, 1, 0, 2, 3, 2, 1, 2], 03b is not an image.
BATCH_CALLS = {
    '--batch-size 1 --no-pipeline': [1] * 9,
    # chunks [00 01 02] [03 03b 04] [05 06 07] [08]
    '--batch-size 3': [3, 1, 1, 1, 2, 1],
    # chunks [00 01 02 03 03b 04 05 06] [07 08]
    '--batch-size 8': [5, 1, 1, 2],
}


def test_batch_size_keeps_order_keypoints_and_bad_files(model, mini_images, tmp_path, capfd, recorded_backends):
    """--batch-size N: images of one padded size go through the network together, N at most in one call
    (40083 and 196141 are both 256x384), the others alone; records in input order as with batch size 1, bad
    files one line each in their place, the others still done."""
    folder = tmp_path / 'folder'
    folder.mkdir()
    order = [1, 2, 1, 0, 2, 3, 2, 1, 2]  # a full chunk of one size, runs split across chunks of 3
    for index, image in enumerate(order):
        shutil.copy(mini_images[image], folder / f'{index:02d}.jpg')
    (folder / '03b.jpg').write_text('not an image')  # in the middle of a chunk
    payloads = {}
    for flags in (['--batch-size', '1', '--no-pipeline'], ['--batch-size', '3'], ['--batch-size', '8']):
        json_path = tmp_path / 'poses.json'
        status, errors = run(model, capfd, '--images', folder, '--json', json_path, *flags)
        assert status == 1 and len(errors) == 1 and '03b.jpg' in errors[0] and 'not an image' in errors[0]
        payloads[' '.join(flags)] = json.loads(json_path.read_text())['images']
        assert recorded_backends[-1].batch_sizes == BATCH_CALLS[' '.join(flags)]
    assert len(recorded_backends) == 3
    reference = payloads.pop('--batch-size 1 --no-pipeline')
    assert [os.path.basename(i['file']) for i in reference] == [f'{i:02d}.jpg' for i in range(len(order))]
    assert [len(i['people']) for i in reference] == [[1, 2, 3, 5][i] for i in order]
    for images in payloads.values():
        assert [i['file'] for i in images] == [i['file'] for i in reference]
        for batched, single in zip(images, reference):
            assert len(batched['people']) == len(single['people'])
            for a, b in zip(batched['people'], single['people']):
                np.testing.assert_allclose(a['keypoints'], b['keypoints'], atol=BATCH_ATOL_PX)
                assert abs(a['score'] - b['score']) <= BATCH_ATOL_PX


@pytest.mark.parametrize(
    'flags, message',
    [
        (['--images', 'x.jpg', '--batch-size', '0'], '--batch-size must be at least 1'),
        (['--video', 'x.mp4', '--batch-size', '2'], '--batch-size applies to --images'),
    ],
)
def test_batch_size_usage_errors(flags, message, capfd):
    with pytest.raises(SystemExit) as exit_info:
        infer.main(['--checkpoint-path', 'model.onnx', *flags])
    assert exit_info.value.code == 2 and message in capfd.readouterr().err
