"""A random subset of a COCO annotation file, as the original's scripts/make_val_subset.py makes it."""

from __future__ import annotations

import random

from lwop_jax import atomic
from lwop_jax.evaluation.coco_eval import load_annotations


def make_val_subset(annotations_json, output_json, num_images=250, seed=0) -> dict:
    """scripts/make_val_subset.py: num_images random images (random.Random(seed) shuffle of the image
    indices) with all their annotations; info, licenses and categories kept. The original shuffles a
    hard-coded range(1807); this uses the file's image count (the same for a 1807-image file).
    Writes output_json atomically and returns the subset."""
    dataset = load_annotations(annotations_json)
    indices = list(range(len(dataset['images'])))
    random.Random(seed).shuffle(indices)
    images = [dataset['images'][i] for i in indices[:num_images]]
    chosen = {image['id'] for image in images}
    subset = {key: dataset[key] for key in ('info', 'licenses') if key in dataset}
    subset['images'] = images
    # Annotations grouped by image in the subset's image order, as the original groups them.
    by_image = {}
    for annotation in dataset['annotations']:
        if annotation['image_id'] in chosen:
            by_image.setdefault(annotation['image_id'], []).append(annotation)
    subset['annotations'] = [a for image in images for a in by_image.get(image['id'], [])]
    subset['categories'] = dataset['categories']
    atomic.write_json(output_json, subset)
    return subset
