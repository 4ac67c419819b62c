"""tf.data training pipeline and TFDS builder on the 4 COCO mini images."""

import itertools
import logging
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest

tf = pytest.importorskip('tensorflow')
tfds = pytest.importorskip('tensorflow_datasets')

from lwop_jax.data import augment, coco, pipeline, samples, tfds_coco  # noqa: E402
from lwop_jax.data.coco import convert_keypoints, label_keypoints, load_coco_json, prepare_annotations  # noqa: E402
from lwop_jax.data.crowd_mask import crowd_mask  # noqa: E402
from lwop_jax.data.targets import render_targets  # noqa: E402
from lwop_jax.errors import InputFileError  # noqa: E402

MINI_JSON = 'person_keypoints_val2017_mini.json'
CROP, MAP = 368, 46


@pytest.fixture(scope='module')
def mini(coco_mini_dir):
    """(labels, images_dir) of the COCO mini set: 12 labels on 4 images."""
    labels = coco.load_training_labels(coco_mini_dir / MINI_JSON, coco_mini_dir / 'val2017')
    assert len(labels) == 12
    return labels, coco_mini_dir / 'val2017'


def take(dataset, count):
    """First `count` batches as lists of NumPy dicts."""
    return [{key: value.numpy() for key, value in batch.items()} for batch in dataset.take(count)]


def assert_batches_equal(first, second):
    assert len(first) == len(second)
    for one, other in zip(first, second):
        for key in one:
            np.testing.assert_array_equal(one[key], other[key], err_msg=key)


# ------------------------------------------------------------------------------- contract
def test_shapes_dtypes_and_ranges(mini):
    labels, images = mini
    (batch,) = take(pipeline.make_train_dataset(labels, images, batch_size=5, seed=1), 1)
    shapes = {
        'image': (5, CROP, CROP, 3),
        'heatmaps': (5, MAP, MAP, 19),
        'pafs': (5, MAP, MAP, 38),
        'mask': (5, MAP, MAP),
    }
    for key, shape in shapes.items():
        assert batch[key].shape == shape and batch[key].dtype == np.float32, key
    image = batch['image']
    assert image.min() >= -0.5 and image.max() <= 127 / 256
    np.testing.assert_array_equal(image * 256 + 128, np.round(image * 256 + 128))  # whole pixel values
    assert (image == 0).any()  # the 128 padding or grey pixels
    heatmaps, pafs = batch['heatmaps'], batch['pafs']
    assert heatmaps.min() >= 0 and heatmaps.max() <= 1 and heatmaps[..., :18].max() > 0.9
    np.testing.assert_allclose(heatmaps[..., 18], 1 - heatmaps[..., :18].max(axis=-1), atol=1e-7)
    norms = np.hypot(pafs[..., 0::2], pafs[..., 1::2])
    assert np.all((norms == 0) | (np.abs(norms - 1) < 1e-5)) and norms.max() > 0
    np.testing.assert_array_equal(batch['mask'], 1.0)  # COCO mini has no crowd regions


def test_non_augmented_sample_equals_targets_of_the_crop(mini):
    labels, images = mini
    batches = take(
        pipeline.make_train_dataset(labels, images, batch_size=4, augment=False, shuffle=False, reduced_decode=False), 3
    )
    samples = [{key: batch[key][i] for key in batch} for batch in batches for i in range(4)]
    for label, sample in zip(labels, samples):
        params = augment.centered_augmentation(label)
        # Independent of the pipeline: cv2.imread + one warpAffine with the composed matrix.
        image = cv2.imread(os.path.join(images, label['img_paths']), cv2.IMREAD_COLOR)
        expected_image = cv2.warpAffine(
            image,
            params.matrix,
            (CROP, CROP),
            flags=cv2.INTER_LINEAR,
            borderMode=cv2.BORDER_CONSTANT,
            borderValue=(128, 128, 128),
        )
        np.testing.assert_array_equal(sample['image'] * 256 + 128, expected_image)

        keypoints = convert_keypoints(label_keypoints(label), label['img_width'], label['img_height'])
        keypoints[..., :2] = augment.apply_affine(params.matrix, keypoints[..., :2])
        heatmaps, pafs = render_targets(keypoints, CROP, CROP)
        np.testing.assert_array_equal(sample['heatmaps'], heatmaps)
        np.testing.assert_array_equal(sample['pafs'], pafs)
        # The main person sits at the crop centre: some keypoint of it peaks near there.
        assert sample['heatmaps'][MAP // 2 - 12 : MAP // 2 + 12, MAP // 2 - 12 : MAP // 2 + 12, :18].max() > 0.5


# ------------------------------------------------------------------------------- determinism
def test_deterministic_across_instances_and_parallelism(mini):
    labels, images = mini
    runs = [
        take(pipeline.make_train_dataset(labels, images, batch_size=4, seed=5, num_parallel_calls=calls), 4)
        for calls in (1, 4, None)
    ]
    assert_batches_equal(runs[0], runs[1])
    assert_batches_equal(runs[0], runs[2])
    other_seed = take(pipeline.make_train_dataset(labels, images, batch_size=4, seed=6), 1)
    assert not np.array_equal(other_seed[0]['image'], runs[0][0]['image'])


def test_epochs_are_reshuffled_and_cover_every_label(mini):
    labels, _ = mini
    order = pipeline.EpochOrder(len(labels), seed=0, shuffle=True)
    epochs = [[order.locate(epoch * 12 + i)[2] for i in range(12)] for epoch in range(3)]
    assert all(sorted(epoch) == list(range(12)) for epoch in epochs)
    assert epochs[0] != epochs[1] != epochs[2]
    assert [pipeline.EpochOrder(12, 0, False).locate(13)[1:]] == [(1, 1)]


def test_start_step_equals_dropping_the_first_batches(mini):
    labels, images = mini
    uninterrupted = take(pipeline.make_train_dataset(labels, images, batch_size=4, seed=2), 6)
    for start in (2, 4):  # 12 labels / 4 = 3 batches per epoch: step 4 is in the second epoch
        resumed = take(pipeline.make_train_dataset(labels, images, batch_size=4, seed=2, start_step=start), 6 - start)
        assert_batches_equal(resumed, uninterrupted[start:])


def test_hosts_take_disjoint_parts_of_the_global_batch(mini):
    labels, images = mini
    positions = [list(pipeline.host_positions(0, 3, host, 2).take(15).as_numpy_iterator()) for host in (0, 1)]
    assert not set(positions[0]) & set(positions[1])
    assert set(positions[0]) | set(positions[1]) == set(range(30))
    assert positions[1][:3] == [3, 4, 5] and positions[0][3:6] == [6, 7, 8]

    single = take(pipeline.make_train_dataset(labels, images, batch_size=4, seed=3), 3)
    hosts = [
        take(
            pipeline.make_train_dataset(
                labels, images, batch_size=2, seed=3, process_index=host, process_count=2, start_step=1
            ),
            2,
        )
        for host in (0, 1)
    ]
    for step in (1, 2):
        for key in single[0]:
            np.testing.assert_array_equal(
                np.concatenate([hosts[0][step - 1][key], hosts[1][step - 1][key]]), single[step][key], err_msg=key
            )
    assert not np.array_equal(hosts[0][0]['image'], hosts[1][0]['image'])


_EXIT_SCRIPT = """
import sys
from lwop_jax.data import coco, pipeline
labels = coco.load_training_labels(sys.argv[1] + '/person_keypoints_val2017_mini.json', sys.argv[1] + '/val2017')
iterator = iter(pipeline.make_train_dataset(labels, sys.argv[1] + '/val2017', batch_size=8))
for _ in range(3):
    next(iterator)
print('read 3 batches')
"""


@pytest.mark.slow
def test_process_exits_cleanly_with_a_live_iterator(coco_mini_dir):
    """Without the atexit drain, tf.data threads calling into a finalizing interpreter abort the
    process ('terminate called without an active exception') in most runs, or hang it."""
    for _ in range(2):
        result = subprocess.run(
            [sys.executable, '-c', _EXIT_SCRIPT, os.fspath(coco_mini_dir)], capture_output=True, text=True, timeout=90
        )
        assert result.returncode == 0, result.stderr[-2000:]
        assert 'read 3 batches' in result.stdout


# ------------------------------------------------------------------------------- bad data
def _mirror_images(source, destination, corrupt=(), missing=()):
    destination.mkdir()
    for path in sorted(source.iterdir()):
        if path.name in missing:
            continue
        if path.name in corrupt:
            (destination / path.name).write_bytes(b'not a JPEG at all')
        else:
            (destination / path.name).symlink_to(path)
    return destination


def test_corrupt_and_missing_images_are_skipped_counted_and_logged_once(mini, coco_mini_dir, tmp_path, caplog):
    labels, _ = mini
    names = sorted({label['img_paths'] for label in labels})
    images = _mirror_images(coco_mini_dir / 'val2017', tmp_path / 'val2017', corrupt={names[1]}, missing={names[2]})
    skipped = pipeline.SkippedImages()
    with caplog.at_level(logging.WARNING, logger='lwop_jax.data.pipeline'):
        dataset = pipeline.make_train_dataset(labels, images, batch_size=4, seed=0, skipped_images=skipped)
        batches = take(dataset, 6)  # two epochs: every label asked for twice
    assert skipped.count == 2 and dataset.skipped_images is skipped
    assert {os.path.basename(name) for name in skipped.names} == {names[1], names[2]}
    messages = [record.getMessage() for record in caplog.records if 'skipping unreadable' in record.getMessage()]
    assert len(messages) == 2
    assert all(np.isfinite(batch[key]).all() for batch in batches for key in batch)

    # The fallback is the next readable label, with the sample's own random draws.
    good = {i for i, label in enumerate(labels) if label['img_paths'] not in (names[1], names[2])}
    source = samples.LabelFileSource(labels, images)
    producer = pipeline.SampleProducer(source, samples.SampleConfig(), 0, False, pipeline.SkippedImages())
    for index in range(len(labels)):
        fallback = next(i % 12 for i in itertools.count(index) if i % 12 in good)
        expected = samples.process_sample(source.load(fallback), pipeline.sample_rng(0, 0, index))
        for got, want in zip(producer(index), expected):
            np.testing.assert_array_equal(got, want)


def test_load_training_labels_errors(coco_mini_dir, tmp_path):
    with pytest.raises(InputFileError, match='nowhere: COCO images folder not found'):
        coco.load_training_labels(coco_mini_dir / MINI_JSON, tmp_path / 'nowhere')
    with pytest.raises(InputFileError, match='absent.json: COCO annotation file not found'):
        coco.load_training_labels(tmp_path / 'absent.json', coco_mini_dir / 'val2017')
    broken = tmp_path / 'broken.json'
    broken.write_text('{"images": [')
    with pytest.raises(ValueError, match='broken.json: not valid JSON'):
        coco.load_training_labels(broken, coco_mini_dir / 'val2017')
    (tmp_path / 'empty').mkdir()
    with pytest.raises(InputFileError, match='none of the 4 images'):
        coco.load_training_labels(coco_mini_dir / MINI_JSON, tmp_path / 'empty')


def test_crowd_region_is_masked(mini):
    labels, images = mini
    label = dict(labels[0])
    x, y = label['objpos']
    half = 40
    label['segmentations'] = [[[x - half, y - half, x + half, y - half, x + half, y + half, x - half, y + half]]]
    inputs = samples.LabelFileSource([label], images).load(0)
    config = samples.SampleConfig(augment=False)
    *_, mask = samples.process_sample(inputs, pipeline.sample_rng(0, 0, 0), config)
    scale = augment.centered_augmentation(label).scale
    centre = augment.apply_affine(augment.centered_augmentation(label).matrix, [x, y]) / 8
    rows, cols = np.mgrid[0:MAP, 0:MAP] + 0.5
    distance = np.maximum(np.abs(cols - centre[0]), np.abs(rows - centre[1]))  # cell centres, map units
    inside, outside = distance < half * scale / 8 - 1, distance > half * scale / 8 + 1
    assert inside.sum() > 4 and mask.dtype == np.float32
    assert np.all(mask[inside] == 0) and np.all(mask[outside] == 1)


# ------------------------------------------------------------------------------- TFDS
@pytest.fixture(scope='module')
def tfds_builder(coco_mini_dir, tmp_path_factory):
    """The builder prepared from the mini JSON under a manual_dir made of symlinks."""
    root = tmp_path_factory.mktemp('tfds')
    manual = root / 'manual'
    (manual / 'annotations').mkdir(parents=True)
    (manual / 'annotations' / MINI_JSON).symlink_to(coco_mini_dir / MINI_JSON)
    (manual / 'val2017').symlink_to(coco_mini_dir / 'val2017')
    config = tfds_coco.CocoKeypointsConfig(
        name='mini', description='COCO val2017 mini', splits={'validation': (f'annotations/{MINI_JSON}', 'val2017')}
    )
    builder = tfds_coco.CocoPersonKeypoints(config=config, data_dir=os.fspath(root / 'data'))
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=os.fspath(manual)))
    return builder


def test_tfds_records_equal_prepared_labels(tfds_builder, coco_mini_dir):
    labels = prepare_annotations(load_coco_json(coco_mini_dir / MINI_JSON))
    records = tfds_builder.as_data_source('validation')
    assert len(records) == len(labels)
    seen = set()
    for record in records:
        label = labels[record['label_index']]
        seen.add(record['label_index'])
        assert record['file_name'].decode() == label['img_paths']
        assert record['image'] == (coco_mini_dir / 'val2017' / label['img_paths']).read_bytes()
        for key in ('image_id', 'img_width', 'img_height', 'scale_provided', 'segment_area', 'num_keypoints'):
            assert record[key] == label[key], key
        np.testing.assert_array_equal(record['objpos'], label['objpos'])
        np.testing.assert_array_equal(record['bbox'], label['bbox'])
        np.testing.assert_array_equal(
            np.concatenate([record['keypoints'][None], record['other_keypoints']]), label_keypoints(label)
        )
        assert record['crowd_rle'] == b''
    assert seen == set(range(len(labels)))


def test_tfds_samples_equal_file_samples(tfds_builder, mini):
    labels, images = mini
    tfds_source = tfds_coco.TfdsSampleSource(tfds_builder.as_data_source('validation'), 'validation')
    file_source = samples.LabelFileSource(labels, images)
    for index in (0, 5, 11):
        label_index = tfds_builder.as_data_source('validation')[index]['label_index']
        from_tfds = samples.process_sample(tfds_source.load(index), pipeline.sample_rng(9, 0, index))
        from_files = samples.process_sample(file_source.load(label_index), pipeline.sample_rng(9, 0, index))
        for got, want in zip(from_tfds, from_files):
            np.testing.assert_array_equal(got, want)

    for builder_or_dir in (tfds_builder, tfds_builder.data_dir):
        (batch,) = take(
            tfds_coco.make_train_dataset_from_tfds(builder_or_dir, split='validation', batch_size=3, seed=4), 1
        )
        assert batch['image'].shape == (3, CROP, CROP, 3) and batch['heatmaps'].shape == (3, MAP, MAP, 19)
        assert batch['pafs'].shape == (3, MAP, MAP, 38) and batch['mask'].shape == (3, MAP, MAP)
        assert batch['heatmaps'][..., :18].max() > 0.5


def test_crowd_rle_round_trip():
    # Uncompressed (column-major) RLE of rows 30..49 x columns 40..59, and a polygon.
    square = [60 * 40 + 30] + [20, 40] * 19 + [20, 60 * 80 - 60 * 40 - 30 - 20 * 60 + 40]
    segmentations = [[[5, 5, 30, 5, 30, 25, 5, 25]], {'size': [60, 80], 'counts': square}]
    counts = tfds_coco.encode_crowd_rle(segmentations, 60, 80)
    assert isinstance(counts, bytes) and counts
    decoded = tfds_coco.decode_crowd_rle(counts, 60, 80)
    np.testing.assert_array_equal(decoded, crowd_mask(segmentations, 60, 80))
    assert np.all(decoded[30:50, 40:60] == 0) and (decoded == 0).sum() >= 400 + 25 * 20
    assert tfds_coco.encode_crowd_rle([], 60, 80) == b''


def test_tfds_manual_dir_missing_is_reported(tmp_path):
    builder = tfds_coco.CocoPersonKeypoints(data_dir=os.fspath(tmp_path / 'data'))
    with pytest.raises(Exception, match='person_keypoints_train2017.json'):
        builder.download_and_prepare(
            download_config=tfds.download.DownloadConfig(manual_dir=os.fspath(tmp_path / 'manual'))
        )
