"""One training sample from its inputs: augmentation drawn, the JPEG decoded (reduced when the scale
allows), image and crowd mask warped once, targets and the stride-8 loss mask rendered.

NumPy and OpenCV only; :mod:`lwop_jax.data.pipeline` makes tf.data batches of these samples.
"""

import dataclasses
import os

import cv2
import numpy as np

from lwop_jax.data import augment as augmentation
from lwop_jax.data.coco import coco18_layout, convert_keypoints, label_keypoints
from lwop_jax.data.crowd_mask import crowd_mask
from lwop_jax.data.targets import crop_mask_to_maps, downsample_mask, render_targets
from lwop_jax.errors import InputFileError
from lwop_jax.schema import DatasetLayout, KeypointSchema, load_schema

# JPEG decoding at 1/r (libjpeg DCT scaling) and the OpenCV flag for each r.
_REDUCED_DECODE_FLAGS = {
    1: cv2.IMREAD_COLOR,
    2: cv2.IMREAD_REDUCED_COLOR_2,
    4: cv2.IMREAD_REDUCED_COLOR_4,
    8: cv2.IMREAD_REDUCED_COLOR_8,
}


@dataclasses.dataclass(frozen=True)
class SampleConfig:
    """What one sample looks like. crop_size must be a multiple of stride (maps = crop / stride)."""

    crop_size: int = 368
    stride: int = 8
    sigma: float = 7.0
    paf_thickness: float = 1.0
    augment: bool = True
    reduced_decode: bool = True
    augment_config: augmentation.AugmentConfig = augmentation.AugmentConfig()
    schema: KeypointSchema = dataclasses.field(default_factory=load_schema)  # what the targets hold
    layout: DatasetLayout = dataclasses.field(default_factory=coco18_layout)  # the schema's points in the data

    def __post_init__(self):
        if self.crop_size % self.stride:
            raise ValueError(f'crop_size {self.crop_size} is not a multiple of stride {self.stride}')
        if self.augment_config.crop_size != self.crop_size:
            object.__setattr__(
                self, 'augment_config', dataclasses.replace(self.augment_config, crop_size=self.crop_size)
            )

    @property
    def map_size(self):
        return self.crop_size // self.stride

    @property
    def num_heatmaps(self):
        return self.schema.num_heatmaps

    @property
    def num_pafs(self):
        return self.schema.num_pafs


@dataclasses.dataclass
class SampleInputs:
    """Everything one sample needs before decoding.

    label: dict with 'img_width', 'img_height', 'objpos', 'scale_provided' (as prepare_annotations).
    keypoints: (P, D, 3) prepared keypoints in the dataset's order (COCO: D = 17), main person first.
    image_bytes: the encoded image file.
    crowd_mask: callable () -> (H, W) float32 full-resolution mask, or None when no crowd region.
    name: what to call the sample in logs (its file).
    """

    label: dict
    keypoints: np.ndarray
    image_bytes: bytes
    crowd_mask: object
    name: str


class UnreadableImage(InputFileError):
    """The image file is missing, not decodable, or not of the annotated size."""


# ------------------------------------------------------------------------------- sample sources
class LabelFileSource:
    """Random access to training samples from prepared labels and a folder of image files."""

    def __init__(self, labels, images_dir):
        if not labels:
            raise ValueError('no training labels')
        self.labels = labels
        self.images_dir = os.fspath(images_dir)

    def __len__(self):
        return len(self.labels)

    def name(self, index):
        return os.path.join(self.images_dir, self.labels[index]['img_paths'])

    def load(self, index):
        label = self.labels[index]
        path = self.name(index)
        try:
            with open(path, 'rb') as file:
                image_bytes = file.read()
        except OSError as error:
            raise UnreadableImage(f'{type(error).__name__}: {error.strerror or error}') from None
        segmentations = label['segmentations']
        crowd = None
        if segmentations:

            def crowd():
                return crowd_mask(segmentations, label['img_height'], label['img_width'])

        return SampleInputs(
            label=label, keypoints=label_keypoints(label), image_bytes=image_bytes, crowd_mask=crowd, name=path
        )


# ------------------------------------------------------------------------------- one sample
def decode_reduction(scale, enabled=True):
    """Largest r in (1, 2, 4, 8) with scale * r <= 1: decoding at 1/r still leaves the warp a
    (non-enlarging) resampling, so no detail the crop could show is lost."""
    if not enabled:
        return 1
    reduction = 1
    while reduction < 8 and scale * reduction * 2 <= 1:
        reduction *= 2
    return reduction


def decode_image(image_bytes, width, height, reduction=1):
    """Encoded image -> (ceil(H / r), ceil(W / r), 3) uint8 BGR; UnreadableImage if it cannot be
    decoded or its size differs from the annotation's (width, height)."""
    if not image_bytes:  # OpenCV asserts on an empty buffer
        raise UnreadableImage('empty file')
    image = cv2.imdecode(np.frombuffer(image_bytes, dtype=np.uint8), _REDUCED_DECODE_FLAGS[reduction])
    if image is None:
        raise UnreadableImage('not a decodable image')
    expected = (-(-height // reduction), -(-width // reduction))
    if image.shape[:2] != expected:
        raise UnreadableImage(
            f'decoded size {image.shape[1]}x{image.shape[0]} at 1/{reduction} does '
            f'not match the annotated {width}x{height}'
        )
    return image


def sample_params(label, rng, config):
    if config.augment:
        return augmentation.sample_augmentation(label, rng, config.augment_config)
    return augmentation.centered_augmentation(label, config.augment_config)


def stride_mask(crop_mask, config):
    """(S, S) uint8 crop mask or None -> (S/stride, S/stride) float32 loss mask (1 = use)."""
    size = config.map_size
    if crop_mask is None:
        return np.ones((size, size), dtype=np.float32)
    return crop_mask_to_maps(downsample_mask(crop_mask, config.stride), (size, size)).astype(np.float32)


def process_sample(inputs, rng, config=SampleConfig()):
    """One training sample. Returns (image (S, S, 3) uint8 BGR, heatmaps (S/8, S/8, K + 1) float32,
    pafs (S/8, S/8, 2 L) float32, mask (S/8, S/8) float32), K keypoints and L limbs of config.schema.
    Raises UnreadableImage."""
    label = inputs.label
    width, height = int(label['img_width']), int(label['img_height'])
    params = sample_params(label, rng, config)
    reduction = decode_reduction(params.scale, config.reduced_decode)
    image = decode_image(inputs.image_bytes, width, height, reduction)
    full_mask = inputs.crowd_mask() if inputs.crowd_mask is not None else None
    keypoints = convert_keypoints(inputs.keypoints, width, height, config.layout)
    aug, schema = config.augment_config, config.schema
    crop, crop_mask, keypoints = augmentation.warp_sample(
        image, full_mask, keypoints, params, config.crop_size, aug.pad_value, aug.mask_pad_value, reduction,
        schema.flip_permutation,
    )  # fmt: skip
    heatmaps, pafs = render_targets(
        keypoints, config.crop_size, config.crop_size, config.stride, config.sigma, config.paf_thickness,
        schema.training_limbs,
    )  # fmt: skip
    return crop, heatmaps, pafs, stride_mask(crop_mask, config)
