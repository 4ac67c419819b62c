"""Where training samples come from: the COCO JSON with its image files, or TFDS records prepared once
from them (``config.data_source``). Both must give the same batches for the same seed."""

import os
import pathlib

import numpy as np
import pytest

pytest.importorskip('tensorflow_datasets')

from lwop_jax import errors
from lwop_jax.training import data as train_data

MINI_JSON = 'person_keypoints_val2017_mini.json'


def source_config(coco_mini_dir, images, **overrides):
    from lwop_jax.configs import default

    config = default.get_config()
    config.train_labels = os.fspath(coco_mini_dir / MINI_JSON)
    config.train_images = os.fspath(images)
    config.crop_size = 96
    config.batch_size = 4
    config.seed = 3
    config.num_parallel_calls = 2
    for key, value in overrides.items():
        config[key] = value
    return config


def first_batches(data: train_data.TrainData, start: int, count: int) -> list[dict]:
    return train_data.take(data.batches(start), count)


def record_files(folder: pathlib.Path) -> dict[str, int]:
    return {os.fspath(path): path.stat().st_mtime_ns for path in folder.rglob('*') if path.is_file()}


@pytest.fixture
def images_without_one(coco_mini_dir, tmp_path):
    """The mini images folder with one of its four images missing (both sources must skip its samples)."""
    folder = tmp_path / 'val2017'
    folder.mkdir()
    names = sorted(os.listdir(coco_mini_dir / 'val2017'))
    for name in names[1:]:
        (folder / name).symlink_to(coco_mini_dir / 'val2017' / name)
    return folder


@pytest.mark.slow
def test_tfds_records_give_the_json_sources_batches(coco_mini_dir, images_without_one, tmp_path):
    from_json = train_data.train_data_from_config(source_config(coco_mini_dir, images_without_one))
    tfds_config = source_config(coco_mini_dir, images_without_one, data_source='tfds', tfds_data_dir=str(tmp_path))
    from_tfds = train_data.train_data_from_config(tfds_config)
    assert from_tfds.num_examples == from_json.num_examples == 12
    records = record_files(tmp_path / 'lwop_coco_person_keypoints')
    assert any(name.endswith('.array_record-00000-of-00001') for name in records), records

    # 12 samples in batches of 4: start 4 is epoch 1, a new permutation, and crosses into epoch 2.
    for start, count in ((0, 4), (4, 3)):
        for got, want in zip(first_batches(from_tfds, start, count), first_batches(from_json, start, count)):
            assert got.keys() == want.keys()
            for key in want:
                np.testing.assert_array_equal(got[key], want[key], err_msg=key)

    # A second run reads the records it finds: nothing is written again.
    again = train_data.train_data_from_config(tfds_config)
    assert again.num_examples == 12 and record_files(tmp_path / 'lwop_coco_person_keypoints') == records


def test_a_missing_images_folder_is_one_line_for_tfds_too(coco_mini_dir, tmp_path):
    config = source_config(coco_mini_dir, tmp_path / 'nowhere', data_source='tfds', tfds_data_dir=str(tmp_path))
    with pytest.raises(errors.InputFileError, match='nowhere: COCO images folder not found'):
        train_data.train_data_from_config(config)
    assert not (tmp_path / 'lwop_coco_person_keypoints').exists()


def test_an_unknown_data_source_is_named(coco_mini_dir):
    config = source_config(coco_mini_dir, coco_mini_dir / 'val2017', data_source='parquet')
    with pytest.raises(errors.TrainingError, match="data_source: 'parquet' is not one of json, tfds"):
        train_data.train_data_from_config(config)
