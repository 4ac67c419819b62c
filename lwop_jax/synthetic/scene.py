"""Scenes: people placed on a ground plane, crowds, and :func:`render_image`, one image with its
COCO annotations, deterministic from (seed, index). OpenCV and NumPy.

People are drawn far (small) to near (large), each painted a second time into its own part map and
all of them into one figure-label map in depth order (0 background, CROWD_LABEL, then
FIRST_PERSON_LABEL + i for person i); the annotations are read off those maps.
"""

import math

import cv2
import numpy as np

from lwop_jax.synthetic.annotations import crowd_annotation, keypoint_flags, person_annotation
from lwop_jax.synthetic.dataset_skeleton import load_skeleton
from lwop_jax.synthetic.drawing import CLUTTER_SHAPES, apply_camera_effects, draw_background, draw_figure, draw_part_map
from lwop_jax.synthetic.figure import make_figure

# People per image and their placement.
MIN_PERSON_HEIGHT = 40  # pixels, standing height
MAX_PERSON_HEIGHT_TO_IMAGE = 1.3  # taller people are cut by the image border
NEAR_PREVIOUS_PROBABILITY = 0.5  # place a person next to an earlier one, so that they overlap
MIN_ANNOTATED_AREA = 16  # people with fewer visible pixels are drawn but not annotated
CROWD_PROBABILITY = 0.25
CROWD_PEOPLE = (12, 40)
CROWD_PERSON_HEIGHT = (22, 48)

CROWD_LABEL = 1  # in the figure map: 0 background, 1 crowd, 2 + i person i (draw order)
FIRST_PERSON_LABEL = 2


def _clipped_box(figure, height, width):
    """Integer (x0, y0, x1, y1) of the figure's bounds inside the image, or None if outside."""
    x0, y0, x1, y1 = figure.bounds()
    x0, y0 = max(int(math.floor(x0)), 0), max(int(math.floor(y0)), 0)
    x1, y1 = min(int(math.ceil(x1)) + 1, width), min(int(math.ceil(y1)) + 1, height)
    return (x0, y0, x1, y1) if x0 < x1 and y0 < y1 else None


def _log_uniform(rng, low, high):
    return float(math.exp(rng.uniform(math.log(low), math.log(high))))


def _stand_on(figure, x, feet_y):
    """Move a figure so that its lowest point is at feet_y and its centre at x."""
    low = figure.points.max(axis=0)[1]
    center_x = (figure.points.min(axis=0)[0] + figure.points.max(axis=0)[0]) / 2
    figure.translate((x - center_x, feet_y - low))


def place_people(
    rng,
    height,
    width,
    max_people,
    min_person_height=MIN_PERSON_HEIGHT,
    max_person_height=MAX_PERSON_HEIGHT_TO_IMAGE,
    people_inside=False,
):
    """Random people on a ground plane, sorted far (small) to near (large): bigger people stand lower,
    some next to an earlier one (so they overlap), some cut by the image border unless
    ``people_inside`` (then each is moved, as little as needed, to lie wholly inside the image).
    Standing heights are log-uniform in [min_person_height, max_person_height x image height]."""
    count = int(rng.integers(1, max_people + 1))
    heights = sorted(_log_uniform(rng, min_person_height, max_person_height * height) for _ in range(count))
    horizon = rng.uniform(0.15, 0.5) * height
    # The feet of a person h pixels tall are ~ camera_height * h below the horizon.
    camera_height = rng.uniform(0.7, 1.1)
    figures = []
    for height_px in heights:
        figure = make_figure(rng, height_px)
        if figures and rng.random() < NEAR_PREVIOUS_PROBABILITY:
            other = figures[rng.integers(len(figures))]
            x0, _, x1, _ = other.bounds()
            x = (x0 + x1) / 2 + rng.choice((-1.0, 1.0)) * rng.uniform(0.1, 0.8) * max(x1 - x0, height_px * 0.3)
        else:
            x = rng.uniform(-0.1, 1.1) * width
        feet_y = horizon + height_px * (camera_height + rng.normal(0.0, 0.08))
        _stand_on(figure, x, feet_y)
        if people_inside:
            _move_inside(figure, height, width)
        figures.append(figure)
    return figures


def _move_inside(figure, height, width):
    """Translate a figure by the smallest amount that puts its bounds inside the image (per axis, if it fits)."""
    x0, y0, x1, y1 = figure.bounds()
    shift = []
    for low, high, size in ((x0, x1, width), (y0, y1, height)):
        shift.append(-low if low < 0 else (size - 1 - high if high > size - 1 else 0.0))
    figure.translate(tuple(shift))


def draw_crowd(rng, image, figure_map, light):
    """A dense cluster of small unshaded people; marks its region (closed union of their masks) in
    figure_map with CROWD_LABEL."""
    height, width = figure_map.shape
    person_height = rng.uniform(*CROWD_PERSON_HEIGHT)
    center_x = rng.uniform(0.15, 0.85) * width
    base_y = rng.uniform(0.35, 0.7) * height
    count = int(rng.integers(*CROWD_PEOPLE))
    # Dense: a person is about 0.3 of its height wide, and the rows (feet +-0.6 heights) overlap.
    half_span = math.sqrt(count) * person_height * rng.uniform(0.3, 0.5)
    feet = sorted(base_y + rng.uniform(-0.6, 0.6) * person_height for _ in range(count))  # back rows first
    union = np.zeros_like(figure_map)
    for feet_y in feet:
        figure = make_figure(rng, person_height * rng.uniform(0.85, 1.15), families=('stand', 'walk', 'gesture'))
        _stand_on(figure, center_x + rng.uniform(-half_span, half_span), feet_y)
        box = _clipped_box(figure, height, width)
        if box is None:
            continue
        draw_figure(image, figure, light, shaded=False)
        x0, y0, x1, y1 = box
        draw_part_map(union[y0:y1, x0:x1], figure, (x0, y0))
    rows, columns = np.flatnonzero(union.any(axis=1)), np.flatnonzero(union.any(axis=0))
    if rows.size == 0:
        return
    # A crowd is a region, gaps between heads included: close the union (in its box only, for speed).
    size = int(person_height * 0.3) | 1
    y0, y1 = max(rows[0] - size, 0), min(rows[-1] + size + 1, height)
    x0, x1 = max(columns[0] - size, 0), min(columns[-1] + size + 1, width)
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (size, size))
    region = cv2.morphologyEx((union[y0:y1, x0:x1] > 0).astype(np.uint8), cv2.MORPH_CLOSE, kernel) > 0
    figure_map[y0:y1, x0:x1][region] = CROWD_LABEL


# ========================================================================================= images
def image_rng(seed, index):
    """The generator of image ``index``: independent of every other image, so any order or process
    gives the same image."""
    return np.random.default_rng([int(seed), int(index)])


def render_image(
    index,
    seed=0,
    width=640,
    height=480,
    max_people=4,
    crowd_probability=CROWD_PROBABILITY,
    debug=False,
    min_person_height=MIN_PERSON_HEIGHT,
    max_person_height=MAX_PERSON_HEIGHT_TO_IMAGE,
    people_inside=False,
    clutter_shapes=CLUTTER_SHAPES,
    skeleton=None,
):
    """Render image ``index`` of the data set of ``seed``.

    ``skeleton`` (a :class:`~lwop_jax.synthetic.dataset_skeleton.DatasetSkeleton`, a shipped one's name or
    a JSON file; None: COCO's 17 keypoints) chooses the keypoints annotated, not the image: every skeleton
    gives the same image, people and flags of the body points they share.

    Returns:
        (image_bgr (H, W, 3) uint8, annotations) where annotations are COCO dicts without 'id'
        (image_id = index + 1): people in draw order (far to near), then the crowd region if any.
        With ``debug``, a third value: {'figures': per drawn person in draw order, a dict with
        'own_mask' (H, W) bool (all its pixels), 'visible_mask' (not covered by a later person),
        'part_map' (H, W) uint8 (PART_ID of its top-most part per pixel), 'faces_away' (17,) bool,
        'pose' (the sampled angles), 'annotation_index' (into annotations, None if too small),
        'points' (body.POINT_INDEX rows, 2) float pixels of every body point, inside the image or not;
        'crowd_mask': (H, W) bool visible crowd region or None; 'figure_map': (H, W) uint8}.
    """
    skeleton = load_skeleton(skeleton)
    rng = image_rng(seed, index)
    image_id = index + 1
    image = draw_background(rng, height, width, clutter_shapes)
    light_angle = math.radians(-90 + rng.uniform(-60, 60))  # mostly from above
    light = np.array([math.cos(light_angle), math.sin(light_angle)])
    figure_map = np.zeros((height, width), dtype=np.uint8)
    if rng.random() < crowd_probability:
        draw_crowd(rng, image, figure_map, light)
    figures = place_people(rng, height, width, max_people, min_person_height, max_person_height, people_inside)
    drawn = _draw_people(image, figure_map, figures, light)
    image = apply_camera_effects(rng, image)

    annotations, annotation_indices = _annotate_people(image_id, drawn, figure_map, skeleton)
    crowd_region = figure_map == CROWD_LABEL
    has_crowd = bool(crowd_region.any())
    if has_crowd:
        annotations.append(crowd_annotation(image_id, crowd_region, skeleton.num_keypoints))
    if not debug:
        return image, annotations
    return image, annotations, _debug_info(drawn, annotation_indices, figure_map, crowd_region if has_crowd else None)


def _draw_people(image, figure_map, figures, light):
    """Paint the figures in order into the image, and their labels into ``figure_map``; returns
    [(figure, label, box, part map of the box)] of those inside the image."""
    height, width = figure_map.shape
    drawn = []
    for figure in figures:
        box = _clipped_box(figure, height, width)
        if box is None:
            continue
        x0, y0, x1, y1 = box
        part_map = np.zeros((y1 - y0, x1 - x0), dtype=np.uint8)
        draw_part_map(part_map, figure, (x0, y0))
        label = FIRST_PERSON_LABEL + len(drawn)
        figure_map[y0:y1, x0:x1][part_map > 0] = label
        draw_figure(image, figure, light)
        drawn.append((figure, label, box, part_map))
    return drawn


def _annotate_people(image_id, drawn, figure_map, skeleton):
    """(annotations of the drawn people big enough to annotate, index into them of each drawn person
    or None)."""
    height, width = figure_map.shape
    annotations, annotation_indices = [], []
    for figure, label, box, part_map in drawn:
        x0, y0, x1, y1 = box
        visible = figure_map[y0:y1, x0:x1] == label
        if visible.sum() < MIN_ANNOTATED_AREA:
            annotation_indices.append(None)
            continue
        keypoints = keypoint_flags(figure, label, figure_map, part_map, box, height, width, skeleton)
        annotation_indices.append(len(annotations))
        annotations.append(person_annotation(image_id, keypoints, visible, box))
    return annotations, annotation_indices


def _debug_info(drawn, annotation_indices, figure_map, crowd_region):
    figures = []
    for (figure, label, box, part_map), annotation_index in zip(drawn, annotation_indices):
        x0, y0, x1, y1 = box
        full_part_map = np.zeros_like(figure_map)
        full_part_map[y0:y1, x0:x1] = part_map
        figures.append(
            {
                'own_mask': full_part_map > 0,
                'visible_mask': figure_map == label,
                'part_map': full_part_map,
                'faces_away': figure.faces_away.copy(),
                'pose': dict(figure.pose),
                'annotation_index': annotation_index,
                'points': figure.points.copy(),
            }
        )
    return {'figures': figures, 'crowd_mask': crowd_region, 'figure_map': figure_map}
