"""A person in image pixels: the posed 3-D skeleton projected, rolled and scaled, with its clothes.

:class:`Figure` holds what the drawing needs (points, depths, projected axes, the parts back to front,
the torso silhouette); :func:`make_figure` samples pose, body and colour palette
(:func:`sample_palette`) of a random person. NumPy only.
"""

import colorsys
import math

import numpy as np

from lwop_jax.synthetic.body import (
    HEAD_DEPTH_BIAS,
    HEAD_HEIGHT_TO_WIDTH,
    LIMB_PARTS,
    LIMB_RADII,
    MIN_LIMB_THICKNESS,
    NECK_DEPTH_BIAS,
    NUM_COCO_KEYPOINTS,
    PART_ID,
    POINT_INDEX,
    TORSO_DEPTH_BIAS,
    TORSO_LEVELS,
    clip,
    face_points_away,
    sample_body,
    sample_pose,
    skeleton_3d,
)

SKIN_TONES = ((189, 210, 245), (160, 190, 230), (125, 160, 210), (95, 130, 180), (65, 95, 145), (45, 65, 105))
HAIR_COLOURS = ((20, 20, 25), (30, 45, 70), (40, 80, 130), (110, 170, 210), (150, 150, 155), (35, 60, 150))
SHOE_COLOURS = ((25, 25, 25), (60, 60, 60), (230, 230, 230), (40, 60, 100))

SHADE_FACTORS = ((0.55, 0), (1.0, 0), (1.15, 25))  # shadow, base, highlight = colour * factor + add


# ===================================================================================== 2-D figure
class Figure:
    """A posed person in image pixels: its points, depths, projected axes, body and colours.

    ``parts`` lists what to paint, back to front: (depth, part id, kind, geometry, colour role).
    """

    def __init__(self, pose, body, palette, height_px):
        points_3d, axes = skeleton_3d(pose, body)
        roll = math.radians(pose['roll'])
        rotation = np.array([[math.cos(roll), -math.sin(roll)], [math.sin(roll), math.cos(roll)]])
        self.points = points_3d[:, :2] @ rotation.T * height_px  # (len(POINT_INDEX), 2), hip centre at (0, 0)
        self.depths = points_3d[:, 2]  # units of height, + = nearer
        # Projected unit axes (length < 1 when foreshortened).
        head_front, head_up, _ = axes['head']
        self.head_front_2d, self.head_up_2d = head_front[:2] @ rotation.T, head_up[:2] @ rotation.T
        self.head_front_z = float(head_front[2])
        self.torso_left_2d, self.torso_front_2d = (axis[:2] @ rotation.T for axis in axes['torso'])
        self.faces_away = face_points_away(axes['head'])
        self.scale = height_px  # pixels per unit of height
        self.pose = pose
        self.body = body
        self.palette = palette
        self._parts = self._torso_polygons = None  # computed when first drawn

    def point(self, name):
        return self.points[POINT_INDEX[name]]

    @property
    def keypoints(self):
        """(17, 2) COCO keypoints, pixels."""
        return self.points[:NUM_COCO_KEYPOINTS]

    def translate(self, delta):
        self.points = self.points + np.asarray(delta, dtype=np.float64)
        self._parts = self._torso_polygons = None

    def _radius(self, key):
        return max(LIMB_RADII[key] * self.body['width'] * self.scale, MIN_LIMB_THICKNESS / 2)

    @property
    def parts(self):
        if self._parts is None:
            self._parts = self._parts_back_to_front()
        return self._parts

    def _parts_back_to_front(self):
        depth = {name: self.depths[index] for name, index in POINT_INDEX.items()}
        body_depth = (depth['shoulder_center'] + depth['hip_center']) / 2
        parts = [(body_depth + TORSO_DEPTH_BIAS, PART_ID['torso'], 'torso', None, None)]
        for name, start, end, radius_key, role in LIMB_PARTS:
            # The neck joins torso and head: always over the torso, under the head.
            part_depth = body_depth + NECK_DEPTH_BIAS if name == 'neck' else (depth[start] + depth[end]) / 2
            parts.append(
                (
                    part_depth,
                    PART_ID[name],
                    'capsule',
                    (self.point(start), self.point(end), self._radius(radius_key)),
                    role,
                )
            )
        # The head always covers the top of its neck (a head leaning away from the camera too).
        head_depth = max(depth['head_center'] + HEAD_DEPTH_BIAS, body_depth + NECK_DEPTH_BIAS + 1e-3)
        parts.append((head_depth, PART_ID['head'], 'head', None, 'hair'))
        order = sorted(range(len(parts)), key=lambda i: (parts[i][0], i))
        return [parts[i] for i in order]

    def torso_polygons(self):
        """[(polygon (N, 2), colour role)]: the torso silhouette level by level (TORSO_LEVELS).

        The half width at a level is the support function of its elliptic cross-section (half
        width along the chest's left axis, half depth along its front axis) across the spine.
        """
        if self._torso_polygons is None:
            self._torso_polygons = self._compute_torso_polygons()
        return self._torso_polygons

    def _compute_torso_polygons(self):
        top, bottom = self.point('shoulder_center'), self.point('hip_center')
        spine = bottom - top
        spine_length = np.linalg.norm(spine)
        across = np.array([-spine[1], spine[0]]) / spine_length if spine_length > 1e-6 else np.array([1.0, 0.0])
        width = self.body['width'] * self.scale
        sides = {}
        for position, half_width, half_depth, role in TORSO_LEVELS:
            center = top + position * spine
            half = width * math.hypot(
                half_width * np.dot(self.torso_left_2d, across), half_depth * np.dot(self.torso_front_2d, across)
            )
            sides.setdefault(role, []).append((center + half * across, center - half * across))
        return [
            (np.array([a for a, _ in levels] + [b for _, b in reversed(levels)]), role)
            for role, levels in sides.items()
        ]

    def bounds(self):
        """(x0, y0, x1, y1) around everything drawn, pixels (generous)."""
        margin = (self.body['head_radius'] * HEAD_HEIGHT_TO_WIDTH + 0.1) * self.scale + MIN_LIMB_THICKNESS + 2
        low, high = self.points.min(axis=0) - margin, self.points.max(axis=0) + margin
        return float(low[0]), float(low[1]), float(high[0]), float(high[1])


def make_figure(rng, height_px, families=None):
    """A random person of standing height ``height_px`` pixels, hip centre at (0, 0)."""
    pose = sample_pose(rng, families)
    body = sample_body(rng)
    return Figure(pose, body, sample_palette(rng), height_px)


# ======================================================================================== colours
def _hsv_bgr(hue, saturation, value):
    r, g, b = colorsys.hsv_to_rgb(hue, saturation, value)
    return np.array([b, g, r]) * 255.0


def sample_palette(rng):
    """(shadow, base, highlight) BGR int tuples of each colour role: random clothes, a skin tone,
    hair, shoes."""
    skin = np.array(SKIN_TONES[rng.integers(len(SKIN_TONES))], dtype=np.float64) * rng.uniform(0.9, 1.1)
    shirt = _hsv_bgr(rng.random(), rng.uniform(0.15, 0.9), rng.uniform(0.25, 0.95))
    trousers = _hsv_bgr(rng.random(), rng.uniform(0.1, 0.7), rng.uniform(0.15, 0.7))
    palette = {
        'skin': skin,
        'shirt': shirt,
        'trousers': trousers,
        'sleeve': shirt if rng.random() < 0.5 else skin,  # long or short sleeves
        'leg': trousers if rng.random() < 0.8 else skin,  # trousers or shorts
        'hair': np.array(HAIR_COLOURS[rng.integers(len(HAIR_COLOURS))], dtype=np.float64),
        'shoe': np.array(SHOE_COLOURS[rng.integers(len(SHOE_COLOURS))], dtype=np.float64),
    }
    return {role: _shades(colour) for role, colour in palette.items()}


def _shades(colour):
    """(shadow, base, highlight) BGR int tuples of a colour."""
    channels = [float(v) for v in colour]
    return tuple(tuple(int(clip(v * factor + add, 0.0, 255.0)) for v in channels) for factor, add in SHADE_FACTORS)
