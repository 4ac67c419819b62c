"""The AP of perfect network maps on a COCO-format set: the bound a model of this design is read against."""

from __future__ import annotations

import numpy as np

from lwop_jax.data.coco import convert_keypoints, prepare_keypoints
from lwop_jax.data.targets import render_targets
from lwop_jax.evaluation.coco_eval import EvalResult, as_dataset, keypoint_category_id, locate_images, score_images
from lwop_jax.evaluation.sigmas import keypoint_category_names
from lwop_jax.inference.decode import decode
from lwop_jax.inference.preprocess import STRIDE, VAL_BASE_HEIGHT, preprocess_val, upsample_val_maps
from lwop_jax.schema import KeypointSchema, load_schema


def ground_truth_ceiling(
    annotations_json,
    images_dir,
    *,
    base_height=VAL_BASE_HEIGHT,
    stride=STRIDE,
    image_ids=None,
    schema: KeypointSchema | None = None,
) -> EvalResult:
    """The AP of perfect network maps: what the stride, the map upsampling, the decoder and OKS leave.

    Each image's annotated people are rendered as the training targets (heatmaps and PAFs at the
    network's stride, :func:`lwop_jax.data.targets.render_targets`) at the single-scale evaluation input
    (``base_height``, padding included), and those maps go through the evaluation path in place of the
    network's (upsampling, decoding, COCOeval). No model can be expected to beat this on these
    annotations at this input size; small people (whose OKS tolerates only a pixel or two) pull it down.
    image_ids: only these images (e.g. those a model evaluation scored). schema: the keypoint schema of
    the maps (None: coco18), read from the dataset's keypoints as training reads them, decoded and scored
    (its OKS sigmas) as a model of that schema is. Missing images stop it (InputFileError), unreadable ones
    are skipped and listed; a dataset that lacks a keypoint the schema needs raises SchemaError. Returns
    EvalResult.
    """
    dataset = as_dataset(annotations_json)
    category_id = keypoint_category_id(dataset)
    trained = schema or load_schema()
    layout = trained.dataset_layout(keypoint_category_names(dataset), 'the ground-truth ceiling labels')
    people: dict[int, list] = {}
    for annotation in dataset['annotations']:
        if (
            annotation.get('category_id') == category_id
            and not annotation.get('iscrowd')
            and annotation.get('num_keypoints', 0) > 0
        ):
            people.setdefault(annotation['image_id'], []).append(prepare_keypoints(annotation['keypoints']))

    def perfect_poses(image, image_entry):
        batch, geometry = preprocess_val(image, base_height, 1.0, stride)
        keypoints = convert_keypoints(
            np.reshape(people.get(image_entry['id'], []), (-1, layout.num_dataset_keypoints, 3)),
            image.shape[1],
            image.shape[0],
            layout,
        )
        top, left = geometry.pad[:2]
        keypoints[..., 0] = keypoints[..., 0] * geometry.scale + left  # image -> network input pixels
        keypoints[..., 1] = keypoints[..., 1] * geometry.scale + top
        heatmaps, pafs = render_targets(keypoints, batch.shape[1], batch.shape[2], stride, limbs=trained.training_limbs)
        # network_maps' single-scale path, with these maps as the network's output
        return decode(
            upsample_val_maps(heatmaps, geometry, stride), upsample_val_maps(pafs, geometry, stride), schema=schema
        )

    present, missing = locate_images(dataset, images_dir, image_ids)
    return score_images(dataset, present, missing, perfect_poses, schema=schema)
