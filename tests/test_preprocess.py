"""Pre-processing and map up-sampling parity with the original (README sections 3 and 6)."""

import json

import cv2
import numpy as np
import pytest

from lwop_jax.inference.preprocess import (
    InputGeometry,
    demo_keypoints_to_image,
    pad_to_stride,
    preprocess_demo,
    preprocess_val,
    upsample_demo_maps,
    upsample_val_maps,
)

CASES = ('c000', 'c001', 'c002', 'c003')


@pytest.fixture(scope='module')
def outputs(reference_dir):
    with np.load(reference_dir / 'reference_outputs_1stage.npz') as data:
        return {key: data[key] for key in data.files}


@pytest.fixture(scope='module')
def decode_reference(reference_dir):
    with np.load(reference_dir / 'decode_reference.npz') as data:
        keep = [
            k for k in data.files if k.endswith(('_meta', '_lowres_heatmaps', '_lowres_pafs', '_heatmaps', '_pafs'))
        ]
        return {key: data[key] for key in keep}


def _read(coco_mini_dir, file_name):
    image = cv2.imread(str(coco_mini_dir / 'val2017' / file_name), cv2.IMREAD_COLOR)
    assert image is not None, file_name
    return image


def _nchw_to_hwc(array):
    return np.transpose(array[0], (1, 2, 0))


def test_demo_input_is_bit_exact(outputs, coco_mini_dir):
    image = _read(coco_mini_dir, str(outputs['a_image_file']))
    batch, geometry = preprocess_demo(image, net_height=256)
    assert batch.dtype == np.float32 and batch.shape == (1, 256, 392, 3)
    np.testing.assert_array_equal(np.transpose(batch, (0, 3, 1, 2)), outputs['a_input'])
    assert geometry.scale == float(outputs['a_scale'])
    assert geometry.pad == tuple(outputs['a_pad'].tolist())
    assert geometry.image_hw == tuple(outputs['a_orig_hw'].tolist())
    assert geometry.scaled_hw == tuple(outputs['a_scaled_hw'].tolist())
    assert geometry.padded_hw == (256, 392)


def test_demo_upsampling_is_bit_exact(outputs):
    for name in ('heatmaps', 'pafs'):
        ours = upsample_demo_maps(_nchw_to_hwc(outputs[f'a_stage1_{name}']))
        assert ours.dtype == np.float32
        np.testing.assert_array_equal(ours, outputs[f'a_demo_upsampled_{name}'])


@pytest.mark.parametrize('case', CASES)
def test_val_geometry_matches_original(decode_reference, coco_mini_dir, case):
    meta = json.loads(str(decode_reference[f'{case}_meta']))
    image = _read(coco_mini_dir, meta['file_name'])
    batch, geometry = preprocess_val(image, base_height=368)
    assert geometry.image_hw == tuple(meta['image_hw'])
    assert geometry.scale == meta['ratio']
    assert geometry.scaled_hw == tuple(meta['scaled_hw'])
    assert geometry.pad == tuple(meta['pad_tblr'])
    assert geometry.padded_hw == tuple(meta['padded_hw'])
    assert batch.shape == (1, *meta['padded_hw'], 3) and batch.dtype == np.float32
    assert tuple(decode_reference[f'{case}_lowres_heatmaps'].shape[2:]) == tuple(meta['lowres_hw'])
    top, left, bottom, right = geometry.pad
    assert not batch[0, :, :left].any() and not batch[0, :, batch.shape[2] - right :].any()


@pytest.mark.parametrize('case', CASES)
def test_val_upsampling_is_bit_exact(decode_reference, case):
    meta = json.loads(str(decode_reference[f'{case}_meta']))
    geometry = InputGeometry(
        scale=meta['ratio'],
        pad=tuple(meta['pad_tblr']),
        image_hw=tuple(meta['image_hw']),
        scaled_hw=tuple(meta['scaled_hw']),
        padded_hw=tuple(meta['padded_hw']),
    )
    for name in ('heatmaps', 'pafs'):
        ours = upsample_val_maps(_nchw_to_hwc(decode_reference[f'{case}_lowres_{name}']), geometry)
        assert ours.dtype == np.float32
        np.testing.assert_array_equal(ours, decode_reference[f'{case}_{name}'])


def test_val_normalises_before_resizing_in_float64(coco_mini_dir):
    """README I1: val.py resizes the float64 normalised image with INTER_CUBIC; the demo order
    (uint8 resize first) gives different values, so the two paths must stay distinct."""
    image = _read(coco_mini_dir, '000000000785.jpg')
    batch, geometry = preprocess_val(image)
    normalised = (image.astype(np.float64) - 128) / 256
    scaled = cv2.resize(normalised, (0, 0), fx=geometry.scale, fy=geometry.scale, interpolation=cv2.INTER_CUBIC).astype(
        np.float32
    )
    top, left = geometry.pad[:2]
    inner = batch[0, top : top + scaled.shape[0], left : left + scaled.shape[1]]
    np.testing.assert_array_equal(inner, scaled)
    uint8_first = cv2.resize(image, (0, 0), fx=geometry.scale, fy=geometry.scale, interpolation=cv2.INTER_CUBIC)
    assert not np.array_equal(inner, (uint8_first.astype(np.float32) - 128) / 256)


def test_pad_to_stride_rules():
    image = np.ones((256, 386, 3), np.float32)
    padded, pad = pad_to_stride(image, 8, [256, 386])
    assert padded.shape == (256, 392, 3) and pad == (0, 3, 0, 3)
    # Shorter than min height: padded evenly with floor/rest; wider stays, rounded up to 8.
    padded, pad = pad_to_stride(np.ones((100, 201, 3), np.float32), 8, [120, 201])
    assert padded.shape == (120, 208, 3) and pad == (10, 3, 10, 4)
    assert padded[:10].sum() == 0 and padded[:, :3].sum() == 0
    # The original's quirk: a taller image than min height gets no vertical pad at all.
    padded, pad = pad_to_stride(np.ones((370, 100, 3), np.float32), 8, [368, 100])
    assert padded.shape == (370, 104, 3) and pad == (0, 2, 0, 2)


def test_demo_keypoints_to_image():
    geometry = InputGeometry(scale=0.5, pad=(4, 3, 4, 3), image_hw=(100, 200), scaled_hw=(50, 100), padded_hw=(58, 106))
    xy = np.array([[1.5, 2.0], [10.0, 20.0]])  # upsampled-map pixels, ratio 4, stride 8
    expected = np.array([[(1.5 * 2 - 3) / 0.5, (2.0 * 2 - 4) / 0.5], [(10 * 2 - 3) / 0.5, (20 * 2 - 4) / 0.5]])
    np.testing.assert_array_equal(demo_keypoints_to_image(xy, geometry), expected)


def test_input_validation():
    with pytest.raises(ValueError, match=r'\(H, W, 3\)'):
        preprocess_demo(np.zeros((10, 10), np.uint8))
    with pytest.raises(ValueError, match='channels-last'):
        upsample_demo_maps(np.zeros((1, 19, 4, 4), np.float32))
