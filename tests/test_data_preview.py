"""`lwop data preview`: the samples are the training stream's own, and the sheet read back shows their
targets where they are and nothing elsewhere."""

import json

import cv2
import numpy as np
import pytest

from lwop_jax import synthetic
from lwop_jax.cli import main
from lwop_jax.data import preview
from lwop_jax.schema import load_schema


def test_a_tile_draws_heatmaps_pafs_ignored_cells_and_names_where_they_are():
    schema = load_schema('coco18')
    size, stride = 128, 8
    cells = size // stride
    image = np.full((size, size, 3), 90, np.uint8)
    heatmaps = np.zeros((cells, cells, schema.num_heatmaps), np.float32)
    heatmaps[3, 3, 0] = 1.0  # the nose at cell (3, 3)
    heatmaps[2:5, 2:5, 0] = np.maximum(heatmaps[2:5, 2:5, 0], 0.3)
    pafs = np.zeros((cells, cells, schema.num_pafs), np.float32)
    pafs[10, 4:10, 0] = 1.0  # limb channel pair 0 points along +x in row 10
    mask = np.ones((cells, cells), np.float32)
    mask[12:, 12:] = 0.0
    tile = preview.draw_sample(image, heatmaps, pafs, mask, schema)
    changed = (tile != image).any(-1)

    nose = preview.keypoint_colors(schema)[0].astype(np.float64)
    expected = 90 * (1 - preview.OVERLAY_OPACITY) + nose * preview.OVERLAY_OPACITY
    np.testing.assert_allclose(tile[3 * stride, 3 * stride], expected, atol=1.0)  # a pixel of the peak's cell
    text = changed[3 * stride - 14 : 3 * stride + 4, 4 * stride : 4 * stride + 40]
    assert text.mean() > 0.1  # 'nose' written right of its peak
    row = changed[10 * stride : 11 * stride, 4 * stride : 11 * stride]
    assert row.any(0).mean() > 0.5  # the arrows along row 10
    ignored = tile[12 * stride :, 12 * stride :]
    assert (ignored == preview.IGNORED_COLOR).all(-1).any() and changed[12 * stride :, 12 * stride :].all()
    untouched = np.ones((cells, cells), bool)
    untouched[:6, :] = untouched[8:, :] = untouched[:, 12:] = False  # rows 6-7, columns 0-11: nothing there
    assert not changed[np.kron(untouched, np.ones((stride, stride), bool))].any()


@pytest.fixture(scope='module')
def dataset(tmp_path_factory):
    folder = tmp_path_factory.mktemp('preview')
    labels = synthetic.generate_dataset(folder, 6, seed=4, crowd_probability=1.0)
    return labels, folder / 'images'


@pytest.mark.slow
def test_preview_sheet_shows_the_training_streams_first_samples(dataset, tmp_path, capsys):
    pytest.importorskip('tensorflow')
    from lwop_jax.configs import default
    from lwop_jax.data import coco
    from lwop_jax.training import data as training_data

    labels, images = dataset
    sheet_path = tmp_path / 'sheet.png'
    count, columns, size, seed = 5, 3, 192, 3
    code = main.main(['data', 'preview', str(labels), '--images', str(images), '--out', str(sheet_path),
                      '--count', str(count), '--columns', str(columns), '--seed', str(seed),
                      f'--config.crop_size={size}'])  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0 and out.startswith(f'{sheet_path}: {count} samples of ')

    # The training stream of the same config: its first batch is the sheet's samples.
    config = default.get_config()
    config.update(train_labels=str(labels), train_images=str(images), crop_size=size, seed=seed, batch_size=count,
                  num_parallel_calls=1)  # fmt: skip
    batch = next(training_data.train_data_from_config(config).batches(0))
    schema = load_schema('coco18')
    training_set = coco.load_training_set(labels, images, config.label_net_input_size, schema)
    settings = training_data.pipeline_arguments(config) | {'schema': schema, 'layout': training_set.layout}
    samples = preview.training_samples(training_set.labels, images, **settings)
    np.testing.assert_array_equal((samples.images.astype(np.float32) - 128) / 256, batch['image'])
    for key, values in (('heatmaps', samples.heatmaps), ('pafs', samples.pafs), ('mask', samples.masks)):
        np.testing.assert_array_equal(values, batch[key])
    assert set(samples.names) <= {image['file_name'] for image in json.loads(labels.read_text())['images']}

    sheet = cv2.imread(str(sheet_path))
    assert sheet.shape == preview.sheet_layout(count, size, columns)[1:] + (3,)
    quiet_pixels = 0
    for index in range(count):
        top, left = preview.tile_origin(index, size, columns)
        tile, crop = sheet[top : top + size, left : left + size], samples.images[index]
        changed = (tile != crop).any(-1)
        heat = samples.heatmaps[index][..., :18]
        strong = np.kron(heat.max(-1) > 0.5, np.ones((8, 8), bool))
        assert strong.any() and changed[strong].mean() > 0.9  # the overlay is there
        busy = (heat.max(-1) > 0) | (np.abs(samples.pafs[index]).max(-1) > 0) | (samples.masks[index] < 1)
        near = cv2.dilate(busy.astype(np.uint8), np.ones((17, 17), np.uint8)).astype(bool)  # names reach 8 cells
        quiet = np.kron(~near, np.ones((8, 8), bool))
        assert not changed[quiet].any()  # and nowhere else
        quiet_pixels += int(quiet.sum())
    assert quiet_pixels > 0


def test_preview_count_is_checked(dataset, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main.main(['data', 'preview', str(dataset[0]), '--images', str(dataset[1]), '--out', 'x.png', '--count', '0'])
    assert exit_info.value.code == 2
    assert '--count 0: draw 1 to 64 samples' in capsys.readouterr().err
