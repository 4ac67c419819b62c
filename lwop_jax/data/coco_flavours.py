"""What labelling tools' COCO keypoint exports leave out or add, read the way training reads COCO itself.

* CVAT ("COCO Keypoints 1.0", through Datumaro) writes a complete COCO file: every person with ``area``,
  ``segmentation`` (``[]`` for a skeleton without a shape), visibility 0 / 1 / 2 (outside / occluded /
  visible; an outside point keeps its coordinates) and an ``attributes`` object; nothing to adapt.
* Label Studio's COCO export writes no ``area`` and no ``segmentation`` for its keypoint annotation, and
  puts its rectangles (another category, without keypoints) in the same file.

So a missing ``area`` is the box's, and annotations of a category without keypoints are not people when
another category has keypoints. Standard library only.
"""


def other_category_ids(coco) -> set:
    """Ids of the categories without keypoints when another category has some: their annotations (a
    labelling tool's boxes of other labels, as Label Studio's rectangles) are not people, and are skipped."""
    categories = [c for c in coco.get('categories') or [] if isinstance(c, dict)]
    with_keypoints = any(c.get('keypoints') for c in categories)
    return {c.get('id') for c in categories if with_keypoints and not c.get('keypoints')}


def annotation_area(annotation):
    """The annotation's ``area``, or its box's when it has none (Label Studio writes none)."""
    return annotation['area'] if 'area' in annotation else annotation['bbox'][2] * annotation['bbox'][3]
