"""Painting: a figure as shaded capsules, polygons and a head into a BGR image, its part ids into a
label map, and the cluttered background and camera effects around the people. OpenCV and NumPy.

All person drawing uses cv2's fixed-point coordinates (FIXED_POINT_SHIFT bits of sub-pixel), so that
the anti-aliased picture (:func:`draw_figure`) and the part map (:func:`draw_part_map`, same shapes,
no anti-aliasing) agree on which pixels a part covers.
"""

import math

import cv2
import numpy as np

from lwop_jax.synthetic.body import HEAD_HEIGHT_TO_WIDTH, KP, MIN_LIMB_THICKNESS

FIXED_POINT_SHIFT = 4  # cv2 drawing with sub-pixel coordinates
FIXED_ONE = 1 << FIXED_POINT_SHIFT
CLUTTER_SHAPES = (3, 15)  # random shapes drawn on the background: uniform in this range


# ======================================================================================== drawing
def _fixed(point):
    return (int(round(point[0] * FIXED_ONE)), int(round(point[1] * FIXED_ONE)))


def _fixed_polygon(polygon):
    return np.rint(np.asarray(polygon) * FIXED_ONE).astype(np.int32)


def _draw_capsule(image, start, end, radius, shades, light, shaded):
    """A limb: round-capped thick line, shaded like a cylinder lit from ``light`` (unit 2-D): a
    shadow-coloured outline, the base colour and a highlight, each pushed towards the light."""
    shadow, base, highlight = shades
    thickness = max(int(round(2 * radius)), MIN_LIMB_THICKNESS)
    if not shaded:
        a, b = _fixed_polygon((start, end)).tolist()
        cv2.line(image, a, b, base, thickness, cv2.LINE_AA, FIXED_POINT_SHIFT)
        return
    ends = np.array((start, end))[None] + (light * radius)[None, None] * np.array((0.0, 0.25, 0.45))[:, None, None]
    (a0, b0), (a1, b1), (a2, b2) = _fixed_polygon(ends).tolist()
    cv2.line(image, a0, b0, shadow, thickness, cv2.LINE_AA, FIXED_POINT_SHIFT)
    cv2.line(image, a1, b1, base, max(int(thickness * 0.7), 1), cv2.LINE_AA, FIXED_POINT_SHIFT)
    if radius >= 3:
        cv2.line(image, a2, b2, highlight, max(int(thickness * 0.25), 1), cv2.LINE_AA, FIXED_POINT_SHIFT)


def _draw_polygon(image, polygon, shades, light, shaded):
    shadow, base, highlight = shades
    if not shaded:
        cv2.fillPoly(image, [_fixed_polygon(polygon)], base, cv2.LINE_AA, FIXED_POINT_SHIFT)
        return
    cv2.fillPoly(image, [_fixed_polygon(polygon)], shadow, cv2.LINE_AA, FIXED_POINT_SHIFT)
    # Shrunk copies pushed towards the light, by less than the polygon's extent along the light, so
    # that they stay inside it (the part map holds the outer polygon only).
    center = polygon.mean(axis=0)
    extent = np.abs((polygon - center) @ light).max()
    for shrink, push, colour_ in ((0.8, 0.12, base), (0.4, 0.3, highlight)):
        inner = center + (polygon - center) * shrink + light * extent * push
        cv2.fillPoly(image, [_fixed_polygon(inner)], colour_, cv2.LINE_AA, FIXED_POINT_SHIFT)


def _head_ellipse(figure):
    """(center, axes (x, y), angle in degrees) of the head: taller than wide, along the head's up."""
    center, radius = figure.point('head_center'), figure.body['head_radius'] * figure.scale
    up = figure.head_up_2d
    norm = np.linalg.norm(up)
    up = up / norm if norm > 1e-3 else np.array([0.0, -1.0])
    angle = math.degrees(math.atan2(-up[0], up[1]))
    # Half a pixel more, so that face points of small heads rasterise inside the outline too.
    return center, (radius + 0.5, radius * HEAD_HEIGHT_TO_WIDTH + 0.5), angle


def _draw_ellipse(image, center, axes, angle, colour, line_type=cv2.LINE_AA):
    cv2.ellipse(image, _fixed(center), _fixed(axes), angle, 0, 360, colour, -1, line_type, FIXED_POINT_SHIFT)


def _draw_head(image, figure, light, shaded):
    center, axes, angle = _head_ellipse(figure)
    hair_shadow, hair, _ = figure.palette['hair']
    _draw_ellipse(image, center, axes, angle, hair_shadow if shaded else hair)
    if shaded:
        _draw_ellipse(image, center + light * axes[0] * 0.12, (axes[0] * 0.85, axes[1] * 0.85), angle, hair)
    front_2d, up_2d, front_z = figure.head_front_2d, figure.head_up_2d, figure.head_front_z
    if front_z <= -0.1:
        return  # seen from the back: hair only
    # The face: an ellipse pushed towards where the head looks, narrower when seen from the side,
    # kept inside the head ellipse.
    radius = axes[0]
    face_center = center + radius * (0.3 * front_2d - 0.1 * up_2d)
    face_axes = (radius * 0.78 * (0.55 + 0.45 * max(front_z, 0.0)), radius * 0.92)
    skin_shadow, skin, _ = figure.palette['skin']
    _draw_ellipse(image, face_center, face_axes, angle, skin)
    if radius >= 6:
        for eye in ('left_eye', 'right_eye'):
            if not figure.faces_away[KP[eye]]:
                cv2.circle(
                    image,
                    _fixed(figure.point(eye)),
                    max(int(radius * 0.12 * FIXED_ONE), FIXED_ONE),
                    (30, 30, 30),
                    -1,
                    cv2.LINE_AA,
                    FIXED_POINT_SHIFT,
                )
        cv2.circle(
            image,
            _fixed(figure.point('nose')),
            max(int(radius * 0.1 * FIXED_ONE), FIXED_ONE),
            skin_shadow,
            -1,
            cv2.LINE_AA,
            FIXED_POINT_SHIFT,
        )


def draw_figure(image, figure, light, shaded=True):
    """Paint a figure's parts back to front into a BGR image."""
    for _, _, kind, geometry, role in figure.parts:
        if kind == 'capsule':
            start, end, radius = geometry
            _draw_capsule(image, start, end, radius, figure.palette[role], light, shaded)
        elif kind == 'torso':
            for polygon, polygon_role in figure.torso_polygons():
                _draw_polygon(image, polygon, figure.palette[polygon_role], light, shaded)
        else:
            _draw_head(image, figure, light, shaded)


def draw_part_map(part_map, figure, origin):
    """Paint a figure's part ids (PART_ID) back to front into a uint8 map whose (0, 0) is ``origin``.

    The shapes are those of :func:`draw_figure` without anti-aliasing, so that the map says which
    part is on top at each pixel.
    """
    origin = np.asarray(origin, dtype=np.float64)
    for _, part_id, kind, geometry, _ in figure.parts:
        if kind == 'capsule':
            start, end, radius = geometry
            thickness = max(int(round(2 * radius)), MIN_LIMB_THICKNESS)
            a, b = _fixed_polygon((start - origin, end - origin)).tolist()
            cv2.line(part_map, a, b, part_id, thickness, cv2.LINE_8, FIXED_POINT_SHIFT)
        elif kind == 'torso':
            for polygon, _ in figure.torso_polygons():
                cv2.fillPoly(part_map, [_fixed_polygon(polygon - origin)], part_id, cv2.LINE_8, FIXED_POINT_SHIFT)
        else:
            center, axes, angle = _head_ellipse(figure)
            _draw_ellipse(part_map, center - origin, axes, angle, part_id, cv2.LINE_8)


# ===================================================================================== background
def draw_background(rng, height, width, clutter_shapes=CLUTTER_SHAPES):
    """A cluttered BGR background: gradient, smooth noise, maybe a floor split and stripes or tiles
    (all computed at half resolution, then upscaled: they are smooth), then sharp random shapes
    (their number uniform in the inclusive range ``clutter_shapes``)."""
    low_height, low_width = (height + 1) // 2, (width + 1) // 2
    corners = rng.uniform(0, 255, size=(2, 2, 3)).astype(np.float32)
    image = cv2.resize(corners, (low_width, low_height), interpolation=cv2.INTER_LINEAR)
    for cells, amplitude in ((4, 50.0), (16, 25.0)):  # smooth blotches at two scales
        noise = rng.normal(0.0, rng.uniform(0, amplitude), size=(cells * height // width + 2, cells + 1, 3))
        image += cv2.resize(noise.astype(np.float32), (low_width, low_height), interpolation=cv2.INTER_CUBIC)
    if rng.random() < 0.5:  # a floor / wall split, with its own colour
        horizon = int(rng.uniform(0.3, 0.7) * low_height)
        image[horizon:] = image[horizon:] * rng.uniform(0.4, 0.9) + rng.uniform(0, 120, size=3).astype(np.float32)
    if rng.random() < 0.3:  # stripes or tiles
        _add_pattern(rng, image)
    image = cv2.resize(np.clip(image, 0, 255).astype(np.uint8), (width, height), interpolation=cv2.INTER_LINEAR)
    for _ in range(rng.integers(clutter_shapes[0], clutter_shapes[1] + 1)):
        _draw_random_shape(rng, image)
    return image


def _add_pattern(rng, image):
    height, width = image.shape[:2]
    period = rng.uniform(4, 30)  # half-resolution pixels
    angle = rng.uniform(0, math.pi)
    ys, xs = np.ogrid[0:height, 0:width]
    phase = (xs * math.cos(angle) + ys * math.sin(angle)) / period
    if rng.random() < 0.5:
        pattern = np.floor(phase) % 2
    else:
        other = (-xs * math.sin(angle) + ys * math.cos(angle)) / period
        pattern = (np.floor(phase) + np.floor(other)) % 2
    image += (pattern.astype(np.float32) * rng.uniform(-40, 40))[..., None]


def _random_colour(rng):
    return tuple(int(v) for v in rng.integers(0, 256, size=3))


def _draw_random_shape(rng, image):
    """A rectangle, circle, ellipse, polygon or thick line: clutter that is not a person."""
    height, width = image.shape[:2]
    colour = _random_colour(rng)
    x, y = int(rng.integers(0, width)), int(rng.integers(0, height))
    size = int(rng.uniform(0.03, 0.3) * min(width, height))
    kind = rng.integers(5)
    fill = -1 if rng.random() < 0.7 else int(rng.integers(1, 6))
    if kind == 0:
        cv2.rectangle(image, (x, y), (x + int(size * rng.uniform(0.3, 2.5)), y + size), colour, fill)
    elif kind == 1:
        cv2.circle(image, (x, y), max(size // 2, 1), colour, fill, cv2.LINE_AA)
    elif kind == 2:
        axes = (max(size // 2, 1), max(int(size * rng.uniform(0.1, 0.5)), 1))
        cv2.ellipse(image, (x, y), axes, float(rng.uniform(0, 180)), 0, 360, colour, fill, cv2.LINE_AA)
    elif kind == 3:
        polygon = (np.array([x, y]) + rng.uniform(-size, size, size=(int(rng.integers(3, 7)), 2))).astype(np.int32)
        cv2.fillPoly(image, [polygon], colour, cv2.LINE_AA)
    else:  # sticks and poles, which a pose network must learn are not limbs
        angle = rng.uniform(0, math.pi)
        end = (int(x + size * 2 * math.cos(angle)), int(y + size * 2 * math.sin(angle)))
        cv2.line(image, (x, y), end, colour, int(rng.integers(2, 14)), cv2.LINE_AA)


def apply_camera_effects(rng, image):
    """Camera effects: sometimes a slight blur; sometimes grey grain in 2 x 2 cells (cheap:
    saturating uint8 add and subtract)."""
    if rng.random() < 0.3:
        image = cv2.GaussianBlur(image, (3, 3), 0)
    if rng.random() < 0.5:
        height, width = image.shape[:2]
        noise = rng.normal(0, rng.uniform(1, 6), size=((height + 1) // 2, (width + 1) // 2)).astype(np.float32)
        for part, apply in ((np.maximum(noise, 0), cv2.add), (-np.minimum(noise, 0), cv2.subtract)):
            grain = cv2.resize(cv2.convertScaleAbs(part), (width, height), interpolation=cv2.INTER_NEAREST)
            image = apply(image, cv2.cvtColor(grain, cv2.COLOR_GRAY2BGR))
    return image
