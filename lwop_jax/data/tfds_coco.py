"""TFDS builder for COCO person keypoints, prepared once as the original's training labels.

TFDS's own ``coco`` has no keypoints. This builder stores one record per *prepared label* (one
main person, :func:`lwop_jax.data.coco.prepare_annotations`): the encoded JPEG bytes as they are
on disk (not re-encoded), the label fields the pipeline needs, and the union of the image's crowd
regions as a compressed COCO RLE. Records are written as ArrayRecord, so that
:func:`make_train_dataset_from_tfds` gets random access and feeds exactly the same per-sample
processing, order, sharding and ``start_step`` logic as :func:`lwop_jax.data.pipeline.make_train_dataset`.

Records keep label order (TFDS's key-hash shuffling is off): record i is label i of
``prepare_annotations``' output (also stored as ``label_index``), so a seed gives the same samples from
the records as from the JSON.

Usage (``train.py --config.data_source=tfds`` does this with :func:`prepared_builder`)::

    builder = CocoPersonKeypoints(data_dir='~/tensorflow_datasets')
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir='/data/coco'))
    dataset = make_train_dataset_from_tfds(builder, split='train', batch_size=32)
"""

import contextlib
import dataclasses
import hashlib
import io
import logging
import os
import re
import sys
import warnings

import numpy as np
import tensorflow_datasets as tfds
from pycocotools import mask as mask_utils
from tqdm import tqdm

from lwop_jax.data.coco import load_coco_json, prepare_annotations
from lwop_jax.data.crowd_mask import crowd_mask
from lwop_jax.data.pipeline import dataset_with_settings
from lwop_jax.data.samples import SampleInputs, UnreadableImage
from lwop_jax.skeleton import NUM_COCO_KEYPOINTS

NET_INPUT_SIZE = 368  # scale_provided = bbox height / NET_INPUT_SIZE, as the original's labels


@dataclasses.dataclass(eq=False)
class CocoKeypointsConfig(tfds.core.BuilderConfig):
    """splits: {split name: (annotation JSON relative to manual_dir, images folder relative to it)};
    net_input_size: a label's scale_provided = its bbox height / this (the original: 368)."""

    splits: dict = dataclasses.field(default_factory=dict)
    net_input_size: int = NET_INPUT_SIZE


COCO_2017 = CocoKeypointsConfig(
    name='2017',
    description='COCO 2017 person keypoints',
    splits={
        'train': ('annotations/person_keypoints_train2017.json', 'train2017'),
        'validation': ('annotations/person_keypoints_val2017.json', 'val2017'),
    },
)


# ------------------------------------------------------------------------------------ crowd RLE
def encode_crowd_rle(segmentations, height, width):
    """Crowd segmentations -> compressed RLE counts (bytes) of their union; b'' if there are none."""
    if not segmentations:
        return b''
    crowd = (crowd_mask(segmentations, height, width) == 0).astype(np.uint8)
    return mask_utils.encode(np.asfortranarray(crowd))['counts']


def decode_crowd_rle(counts, height, width):
    """Inverse of :func:`encode_crowd_rle`: (H, W) float32 mask, 1 = use, 0 = crowd (as crowd_mask)."""
    with warnings.catch_warnings():  # pycocotools' NumPy-2 __array__ deprecation, see crowd_mask.py
        warnings.filterwarnings('ignore', message='__array__ implementation', category=DeprecationWarning)
        crowd = mask_utils.decode({'size': [int(height), int(width)], 'counts': bytes(counts)})
    return np.where(crowd > 0, 0.0, 1.0).astype(np.float32)


# ------------------------------------------------------------------------------------ builder
class CocoPersonKeypoints(tfds.core.GeneratorBasedBuilder):
    """COCO person keypoints, one record per training label of the original's preparation."""

    name = 'lwop_coco_person_keypoints'
    VERSION = tfds.core.Version('1.1.0')
    RELEASE_NOTES = {
        '1.0.0': 'Initial release.',
        '1.1.0': 'Records in label order (record i = label i); a missing image is stored as empty bytes.',
    }
    BUILDER_CONFIGS = [COCO_2017]
    MANUAL_DOWNLOAD_INSTRUCTIONS = """\
    Download COCO 2017 from https://cocodataset.org/#download and place in manual_dir:
      annotations/person_keypoints_train2017.json
      annotations/person_keypoints_val2017.json
      train2017/   (the JPEG files)
      val2017/     (the JPEG files)
    (from annotations_trainval2017.zip, train2017.zip and val2017.zip).
    """

    # Nothing is downloaded, so there is no checksums file to look for next to this module. (Finding
    # it needs the ``importlib_resources`` backport, absent from some TFDS installs.)
    code_path = None

    def __init__(self, *, file_format=None, **kwargs):
        # ArrayRecord: the pipeline needs random access (as_data_source).
        super().__init__(file_format=file_format or 'array_record', **kwargs)

    def _info(self):
        def floats(shape):
            # Raw bytes: TFDS's default float encoding is tf.train's float32 list, which would round
            # the label values (e.g. scale_provided, objpos) the original keeps as float64.
            return tfds.features.Tensor(shape=shape, dtype=np.float64, encoding=tfds.features.Encoding.BYTES)

        return self.dataset_info_from_configs(
            description='COCO person keypoints as prepared for Lightweight OpenPose training '
            '(one record per main person).',
            features=tfds.features.FeaturesDict(
                {
                    'image': tfds.features.Tensor(shape=(), dtype=np.object_),  # encoded JPEG bytes
                    'file_name': tfds.features.Text(),
                    'image_id': np.int64,
                    'label_index': np.int64,
                    'img_width': np.int64,
                    'img_height': np.int64,
                    'objpos': floats((2,)),
                    'bbox': floats((4,)),
                    'scale_provided': floats(()),
                    'segment_area': floats(()),
                    'num_keypoints': np.int64,
                    'keypoints': floats((NUM_COCO_KEYPOINTS, 3)),  # COCO order, prepared flags
                    'other_keypoints': floats((None, NUM_COCO_KEYPOINTS, 3)),  # render order
                    'crowd_rle': tfds.features.Tensor(shape=(), dtype=np.object_),  # b'' = no crowd
                }
            ),
            homepage='https://cocodataset.org/#keypoints-2017',
            # Record i is label i, so that a seed gives the same samples as the JSON source.
            disable_shuffling=True,
        )

    def _split_generators(self, dl_manager):
        manual_dir = os.fspath(dl_manager.manual_dir)
        generators = {}
        for split, (annotations, images) in self.builder_config.splits.items():
            annotations, images = os.path.join(manual_dir, annotations), os.path.join(manual_dir, images)
            for path in (annotations, images):
                if not os.path.exists(path):
                    raise FileNotFoundError(
                        f'{path} not found for split {split!r}.\n{self.MANUAL_DOWNLOAD_INSTRUCTIONS}'
                    )
            generators[split] = self._generate_examples(annotations, images)
        return generators

    def _generate_examples(self, annotations_json, images_dir):
        net_input_size = self.builder_config.net_input_size
        labels = prepare_annotations(load_coco_json(annotations_json), net_input_size, source=annotations_json)
        image_bytes = {}  # several labels share an image: read it once (labels are grouped per image)
        progress = tqdm(labels, desc='TFDS records', unit='label', disable=None, file=sys.stderr)
        for label_index, label in enumerate(progress):
            name = label['img_paths']
            if name not in image_bytes:
                image_bytes.clear()
                image_bytes[name] = _read_or_empty(os.path.join(images_dir, name))
            yield label_index, label_to_record(label, label_index, image_bytes[name])


def _read_or_empty(path):
    """The file's bytes, or b'' when it is missing: the pipeline then skips that sample and reports it,
    as it does for a missing file with the JSON source (so record i stays label i)."""
    try:
        with open(path, 'rb') as file:
            return file.read()
    except FileNotFoundError:
        return b''


def label_to_record(label, label_index, image_bytes):
    """A prepared label (+ its image file's bytes) -> the builder's feature dict."""
    others = [other['keypoints'] for other in label['processed_other_annotations']]
    return {
        'image': image_bytes,
        'file_name': label['img_paths'],
        'image_id': label['image_id'],
        'label_index': label_index,
        'img_width': label['img_width'],
        'img_height': label['img_height'],
        'objpos': np.asarray(label['objpos'], dtype=np.float64),
        'bbox': np.asarray(label['bbox'], dtype=np.float64),
        'scale_provided': label['scale_provided'],
        'segment_area': label['segment_area'],
        'num_keypoints': label['num_keypoints'],
        'keypoints': np.asarray(label['keypoints'], dtype=np.float64),
        'other_keypoints': np.asarray(others, dtype=np.float64).reshape(len(others), NUM_COCO_KEYPOINTS, 3),
        'crowd_rle': encode_crowd_rle(label['segmentations'], label['img_height'], label['img_width']),
    }


# ------------------------------------------------------------------------------------ reading
class TfdsSampleSource:
    """Random access to samples of a prepared split (an ArrayRecord data source)."""

    def __init__(self, data_source, split):
        if len(data_source) == 0:
            raise ValueError(f'split {split!r} has no records')
        self.data_source, self.split = data_source, split

    def __len__(self):
        return len(self.data_source)

    def name(self, index):
        return f'{self.split}[{index}]'

    def load(self, index):
        record = self.data_source[index]
        if not len(record['image']):
            raise UnreadableImage('the image file was missing when the records were prepared')
        label = {key: record[key] for key in ('img_width', 'img_height', 'objpos', 'scale_provided')}
        keypoints = np.concatenate([record['keypoints'][None], record['other_keypoints']], axis=0)
        crowd = None
        if len(record['crowd_rle']):

            def crowd():
                return decode_crowd_rle(record['crowd_rle'], label['img_height'], label['img_width'])

        file_name = record['file_name']
        file_name = file_name.decode() if isinstance(file_name, bytes) else str(file_name)
        return SampleInputs(
            label=label,
            keypoints=keypoints,
            image_bytes=bytes(record['image']),
            crowd_mask=crowd,
            name=f'{self.name(index)} ({file_name})',
        )


def files_config(annotations_json, images_dir, net_input_size=NET_INPUT_SIZE):
    """(builder config, manual_dir) for one annotation file and its images folder: split 'train'.

    The config's name carries the JSON's name and a hash of both paths, the JSON's size and
    net_input_size, so that records prepared from other files or settings go to another folder.
    """
    annotations_json, images_dir = os.path.abspath(annotations_json), os.path.abspath(images_dir)
    manual_dir = os.path.commonpath([os.path.dirname(annotations_json), images_dir])
    identity = f'{annotations_json}\n{images_dir}\n{os.path.getsize(annotations_json)}\n{net_input_size}'
    stem = re.sub(r'[^a-z0-9]+', '_', os.path.splitext(os.path.basename(annotations_json))[0].lower())
    config = CocoKeypointsConfig(
        name=f'{stem}_{hashlib.sha256(identity.encode()).hexdigest()[:12]}',
        description=f'{annotations_json} with the images of {images_dir}',
        splits={'train': (os.path.relpath(annotations_json, manual_dir), os.path.relpath(images_dir, manual_dir))},
        net_input_size=net_input_size,
    )
    return config, manual_dir


def prepared_builder(annotations_json, images_dir, data_dir=None, net_input_size=NET_INPUT_SIZE):
    """The builder of :func:`files_config`, its records written once (later calls find them and only read).

    data_dir: where TFDS keeps prepared datasets (None: its default, ``$TFDS_DATA_DIR`` or
    ``~/tensorflow_datasets``).
    """
    config, manual_dir = files_config(annotations_json, images_dir, net_input_size)
    with _tfds_quiet():
        builder = CocoPersonKeypoints(config=config, data_dir=os.fspath(data_dir) if data_dir else None)
        builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=manual_dir))
    return builder


class _NotCustomConfigNotice(logging.Filter):
    def filter(self, record):
        return not record.getMessage().startswith('Using custom data configuration')


@contextlib.contextmanager
def _tfds_quiet():
    """TFDS's own output hidden while it prepares: its notice that the config is not a registered one (it
    is ours by design), its printed 'Downloading and preparing' lines and its bars without a total; the
    builder shows one bar over the labels instead (:meth:`CocoPersonKeypoints._generate_examples`)."""
    absl_logger, notice = logging.getLogger('absl'), _NotCustomConfigNotice()
    absl_logger.addFilter(notice)
    tfds.display_progress_bar(False)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        tfds.display_progress_bar(True)
        absl_logger.removeFilter(notice)


def _as_builder(builder_or_dir):
    if isinstance(builder_or_dir, tfds.core.DatasetBuilder):
        return builder_or_dir
    return tfds.builder_from_directory(os.fspath(builder_or_dir))


def make_train_dataset_from_tfds(builder_or_dir, *, split='train', batch_size, **settings):
    """:func:`lwop_jax.data.pipeline.make_train_dataset` over a prepared split of the builder.

    builder_or_dir: a prepared :class:`CocoPersonKeypoints` or the folder of a prepared version
    (``<data_dir>/lwop_coco_person_keypoints/<config>/<version>``). Sample index i is record i of
    the split (label i); ``batch_size`` and the other settings are make_train_dataset's.
    """
    builder = _as_builder(builder_or_dir)
    source = TfdsSampleSource(builder.as_data_source(split=split), split)
    return dataset_with_settings(source, batch_size=batch_size, **settings)
