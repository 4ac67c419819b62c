"""Procedural COCO person-keypoint data sets: articulated, shaded people on cluttered backgrounds.

For a user with neither COCO nor a GPU: the demo, the tests and CI get data the project owns. NumPy
and OpenCV only (no jax, no tensorflow).

Each person is a small 3-D model (joint positions from limb lengths and joint angles, turned by a
yaw about the vertical axis, so a person seen from the back has its *anatomical* left on the image
left), projected orthographically, rotated in the image plane, and painted back to front as shaded
capsules (limbs), polygons (torso, pelvis) and an ellipse (head). Every person is painted a second
time into its own part-label mask, and the people of an image into one figure-label map in depth
order; the keypoint flags are read off those masks:

* v = 0: outside the image (and then x = y = 0, as COCO does);
* v = 1: inside the image but covered by a nearer person (drawn later), by another part of the same
  person (the far arm behind the torso, the far shoulder in profile), or on the far side of the head
  (the nose of a person seen from the back);
* v = 2: otherwise, i.e. the pixel under the keypoint shows a part the keypoint belongs to.

Some images hold a crowd: a dense cluster of small people annotated as one ``iscrowd`` 1 region
(uncompressed RLE of its visible pixels, num_keypoints 0), as COCO does.

API: :func:`render_image` (one image and its annotations, deterministic from (seed, index)),
:func:`generate_dataset` (a COCO folder: ``images/*.jpg`` + ``annotations.json``). CLI::

    python -m lwop_jax.synthetic --out DIR --num-images N [--seed S] [--width W] [--height H]
        [--max-people P] [--crowd-probability P] [--format jpg|png] [--workers K]
"""
import argparse
import colorsys
import json
import math
import pathlib

import cv2
import numpy as np

from lwop_jax import atomic
from lwop_jax.skeleton import COCO_KEYPOINT_NAMES, COCO_SKELETON

# =========================================================================================== tables
KP = {name: index for index, name in enumerate(COCO_KEYPOINT_NAMES)}
NUM_COCO_KEYPOINTS = len(COCO_KEYPOINT_NAMES)
SIDES = (('left', 1.0), ('right', -1.0))  # side name and sign of its lateral axis (+x = the person's left)

# Segment lengths and body widths, as fractions of the standing height (after Drillis & Contini):
# with the ankle 0.04 above the floor, the hip joints come at 0.53, the shoulders at 0.82 and the
# top of the head at ~1.0.
BODY_LENGTHS = {
    'torso': 0.29,              # hip-joint line to shoulder line
    'shoulder_half_width': 0.115,
    'hip_half_width': 0.075,    # hip joints, narrower than the pelvis
    'neck': 0.04,               # shoulder line to the bottom of the head sphere
    'head_radius': 0.056,
    'upper_arm': 0.186,
    'forearm': 0.146,
    'hand': 0.075,
    'thigh': 0.245,
    'shin': 0.246,
    'foot': 0.11,
}
# Capsule radius of each limb, fraction of the standing height.
LIMB_RADII = {
    'upper_arm': 0.030, 'forearm': 0.025, 'hand': 0.021,
    'thigh': 0.048, 'shin': 0.036, 'foot': 0.020, 'neck': 0.026,
}
LENGTH_JITTER = 0.04         # relative std of each length, per person
WIDTH_JITTER = (0.85, 1.2)   # build: all widths and radii times this, per person
HEAD_HEIGHT_TO_WIDTH = 1.22  # the head ellipse is taller than the sphere that holds the face points

# Torso silhouette, top to bottom: (position along the spine, 0 = shoulder line, 1 = hip-joint line;
# half width; half depth; colour role). A turned torso is an elliptic cross-section seen obliquely,
# so it widens with the half depth; the shoulder and hip joints stick out beyond the torso in front
# view (upper arms and thighs cover them), and the far one disappears behind the torso at ~55-60
# degrees of yaw, as on a real body.
TORSO_LEVELS = (
    (0.00, 0.080, 0.050, 'shirt'),
    (0.12, 0.095, 0.060, 'shirt'),
    (0.60, 0.080, 0.055, 'shirt'),
    (0.85, 0.085, 0.055, 'shirt'),
    (0.85, 0.085, 0.055, 'trousers'),
    (1.00, 0.050, 0.045, 'trousers'),
    (1.12, 0.035, 0.040, 'trousers'),
)

# Joint angle limits in degrees (every sampled angle is clipped to them).
#   arm_abduction: 0 = hanging, 90 = sideways, 180 = straight up;  arm_flexion: + forward, - backward
#   elbow / knee: 0 = straight;  hip_flexion: + thigh forward;  hip_abduction: + outward
#   spine_pitch: + leaning forward;  spine_lateral: + bending to the person's left
#   forearm_twist: plane of the elbow bend, 0 = forward, 90 = across the body
JOINT_LIMITS = {
    'arm_abduction': (-10, 175), 'arm_flexion': (-50, 170), 'elbow': (0, 150), 'forearm_twist': (-30, 90),
    'hip_flexion': (-30, 125), 'hip_abduction': (-15, 60), 'knee': (0, 150),
    'spine_pitch': (-20, 45), 'spine_lateral': (-20, 20), 'head_turn': (-60, 60), 'head_nod': (-25, 35),
}
# Pose families: sampling weight and the (low, high) range of each angle; angles not listed are
# drawn from DEFAULT_POSE_RANGES. 'gait' swings the legs (and the opposite arms) in anti-phase.
DEFAULT_POSE_RANGES = {
    'forearm_twist': (-20, 60), 'spine_pitch': (-5, 20), 'spine_lateral': (-6, 6),
    'head_turn': (-35, 35), 'head_nod': (-10, 20), 'gait': (0, 0),
}
POSE_FAMILIES = {
    'stand': dict(weight=3, arm_abduction=(3, 25), arm_flexion=(-15, 25), elbow=(0, 40), hip_flexion=(-5, 10),
                  hip_abduction=(0, 12), knee=(0, 10), spine_pitch=(-5, 8)),
    'walk': dict(weight=3, arm_abduction=(3, 15), arm_flexion=(-5, 5), elbow=(5, 40), hip_flexion=(0, 5),
                 hip_abduction=(0, 5), knee=(5, 35), spine_pitch=(0, 8), gait=(15, 30)),
    'run': dict(weight=1, arm_abduction=(5, 20), arm_flexion=(-5, 5), elbow=(70, 110), hip_flexion=(10, 25),
                hip_abduction=(0, 8), knee=(30, 100), spine_pitch=(5, 20), gait=(25, 45)),
    'gesture': dict(weight=2, arm_abduction=(20, 170), arm_flexion=(-10, 110), elbow=(0, 130),
                    hip_flexion=(-5, 10), hip_abduction=(0, 15), knee=(0, 15), spine_pitch=(-8, 10)),
    'sit': dict(weight=1, arm_abduction=(0, 20), arm_flexion=(10, 50), elbow=(40, 100), hip_flexion=(75, 100),
                hip_abduction=(0, 20), knee=(70, 100), spine_pitch=(-10, 10)),
    'crouch': dict(weight=1, arm_abduction=(0, 40), arm_flexion=(20, 80), elbow=(20, 100),
                   hip_flexion=(90, 120), hip_abduction=(5, 30), knee=(100, 140), spine_pitch=(15, 40)),
    'free': dict(weight=1, **{name: limits for name, limits in JOINT_LIMITS.items()
                              if name not in ('spine_pitch', 'spine_lateral', 'head_turn', 'head_nod')}),
}
FACING_CAMERA_PROBABILITY = 0.7        # yaw within +-90 degrees (else seen from the back half)
ROLL_STD_DEG, ROLL_MAX_DEG = 7.0, 20.0  # in-plane rotation of a person
TUMBLE_PROBABILITY = 0.04              # ...or, rarely, anything in +-90 degrees (acrobatics, lying)

# Face points on the head sphere: direction (forward, up, left) in the head frame, and the least
# component of that direction towards the camera for the point to count as visible (ears are
# labelled from the front in COCO, so theirs is negative). They sit a little inside the sphere so
# that they stay inside the head's outline when seen at its edge (an ear in profile).
FACE_POINT_RADIUS = 0.9  # fraction of the head radius
FACE_POINTS = {
    'nose': ((1.0, -0.15, 0.0), 0.0),
    'left_eye': ((0.85, 0.12, 0.42), 0.05),
    'right_eye': ((0.85, 0.12, -0.42), 0.05),
    'left_ear': ((-0.05, 0.0, 1.0), -0.45),
    'right_ear': ((-0.05, 0.0, -1.0), -0.45),
}

# Body parts: (name, from point, to point, radius key, colour role). The 3-D points are the 17 COCO
# keypoints plus EXTRA_POINTS. 'torso' and 'head' are drawn as polygon and ellipse.
EXTRA_POINTS = ('shoulder_center', 'hip_center', 'head_center', 'left_hand_tip', 'right_hand_tip',
                'left_toe', 'right_toe')
POINT_INDEX = {name: index for index, name in enumerate(COCO_KEYPOINT_NAMES + EXTRA_POINTS)}
LIMB_PARTS = tuple(
    part for side, _ in SIDES for part in (
        (f'{side}_upper_arm', f'{side}_shoulder', f'{side}_elbow', 'upper_arm', 'shirt'),
        (f'{side}_forearm', f'{side}_elbow', f'{side}_wrist', 'forearm', 'sleeve'),
        (f'{side}_hand', f'{side}_wrist', f'{side}_hand_tip', 'hand', 'skin'),
        (f'{side}_thigh', f'{side}_hip', f'{side}_knee', 'thigh', 'trousers'),
        (f'{side}_shin', f'{side}_knee', f'{side}_ankle', 'shin', 'leg'),
        (f'{side}_foot', f'{side}_ankle', f'{side}_toe', 'foot', 'shoe'),
    )) + (('neck', 'shoulder_center', 'head_center', 'neck', 'skin'),)
PART_NAMES = ('torso', 'head') + tuple(part[0] for part in LIMB_PARTS)
PART_ID = {name: index + 1 for index, name in enumerate(PART_NAMES)}  # 0 = background in part maps

# The parts each keypoint belongs to: it is visible (v=2) when the top-most part of its own person
# at its pixel is one of these. The torso owns no joint: a shoulder or hip seen through the torso
# is hidden behind it.
KEYPOINT_PARTS = {
    **{name: ('head',) for name in FACE_POINTS},
    **{f'{side}_{joint}': tuple(f'{side}_{part}' for part in parts) for side, _ in SIDES
       for joint, parts in (('shoulder', ('upper_arm',)), ('elbow', ('upper_arm', 'forearm')),
                            ('wrist', ('forearm', 'hand')), ('hip', ('thigh',)), ('knee', ('thigh', 'shin')),
                            ('ankle', ('shin', 'foot')))},
}
KEYPOINT_PART_IDS = tuple(tuple(PART_ID[part] for part in KEYPOINT_PARTS[name]) for name in COCO_KEYPOINT_NAMES)

# Depth of the torso, neck and head relative to the limbs (units of height, + = nearer): limbs level
# with the body centre are painted over the torso, and the head over the neck and torso.
TORSO_DEPTH_BIAS, NECK_DEPTH_BIAS, HEAD_DEPTH_BIAS = -0.005, -0.003, 0.02

# People per image and their placement.
MIN_PERSON_HEIGHT = 40               # pixels, standing height
MAX_PERSON_HEIGHT_TO_IMAGE = 1.3     # taller people are cut by the image border
CLUTTER_SHAPES = (3, 15)             # random shapes drawn on the background: uniform in this range
NEAR_PREVIOUS_PROBABILITY = 0.5      # place a person next to an earlier one, so that they overlap
MIN_ANNOTATED_AREA = 16              # people with fewer visible pixels are drawn but not annotated
CROWD_PROBABILITY = 0.25
CROWD_PEOPLE = (12, 40)
CROWD_PERSON_HEIGHT = (22, 48)
MIN_LIMB_THICKNESS = 3               # pixels: every keypoint stays inside its part's mask

SKIN_TONES = ((189, 210, 245), (160, 190, 230), (125, 160, 210), (95, 130, 180), (65, 95, 145), (45, 65, 105))
HAIR_COLOURS = ((20, 20, 25), (30, 45, 70), (40, 80, 130), (110, 170, 210), (150, 150, 155), (35, 60, 150))
SHOE_COLOURS = ((25, 25, 25), (60, 60, 60), (230, 230, 230), (40, 60, 100))

SHADE_FACTORS = ((0.55, 0), (1.0, 0), (1.15, 25))  # shadow, base, highlight = colour * factor + add
FIXED_POINT_SHIFT = 4  # cv2 drawing with sub-pixel coordinates
FIXED_ONE = 1 << FIXED_POINT_SHIFT
JPEG_QUALITY = 92
CATEGORY = {'id': 1, 'name': 'person', 'supercategory': 'person', 'keypoints': list(COCO_KEYPOINT_NAMES),
            'skeleton': [list(pair) for pair in COCO_SKELETON]}


# ========================================================================================= 3-D pose
def _clip(value, low, high):
    return low if value < low else high if value > high else value


def _unit(vector):
    return vector / math.sqrt(vector @ vector)


def _cross(a, b):
    """np.cross for 3-vectors, without its generality (and cost)."""
    return np.array((a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]))


def _orthogonal_unit(vector, axis, fallback):
    """Unit component of ``vector`` orthogonal to the unit ``axis`` (``fallback`` if it vanishes)."""
    rest = vector - (vector @ axis) * axis
    norm = math.sqrt(rest @ rest)
    if norm < 0.2:
        rest = fallback - (fallback @ axis) * axis
        norm = math.sqrt(rest @ rest)
    return rest / norm


def sample_body(rng):
    """Per-person segment lengths and a width factor (build)."""
    factors = rng.normal(1.0, LENGTH_JITTER, size=len(BODY_LENGTHS)).tolist()
    lengths = {name: value * _clip(factor, 0.88, 1.12)
               for (name, value), factor in zip(BODY_LENGTHS.items(), factors)}
    lengths['width'] = float(rng.uniform(*WIDTH_JITTER))
    return lengths


def sample_pose(rng, families=None):
    """Joint angles (degrees) of one person: a pose family (one of ``families``, default all, by
    weight), then independent angles per side, the yaw and the in-plane roll."""
    names = list(families or POSE_FAMILIES)
    weights = np.array([POSE_FAMILIES[name]['weight'] for name in names], dtype=np.float64)
    family = {**DEFAULT_POSE_RANGES, **POSE_FAMILIES[names[rng.choice(len(names), p=weights / weights.sum())]]}

    uniforms = iter(rng.random(32).tolist())  # one call: per-angle rng calls dominate the cost

    def draw(name):
        low, high = family[name]
        value = low + (high - low) * next(uniforms)
        return _clip(value, *JOINT_LIMITS[name]) if name in JOINT_LIMITS else value

    pose = {name: draw(name) for name in ('spine_pitch', 'spine_lateral', 'head_turn', 'head_nod')}
    swing = draw('gait') * (1.0 if next(uniforms) < 0.5 else -1.0)
    for side, sign in SIDES:
        for name in ('arm_abduction', 'arm_flexion', 'elbow', 'forearm_twist', 'hip_abduction', 'knee'):
            pose[f'{side}_{name}'] = draw(name)
        pose[f'{side}_hip_flexion'] = _clip(draw('hip_flexion') + sign * swing, *JOINT_LIMITS['hip_flexion'])
        # Arms swing against the leg of their side.
        pose[f'{side}_arm_flexion'] = _clip(pose[f'{side}_arm_flexion'] - 0.8 * sign * swing,
                                            *JOINT_LIMITS['arm_flexion'])
    # Most people in photos face the camera more or less.
    facing_camera = next(uniforms) < FACING_CAMERA_PROBABILITY
    pose['yaw'] = (-90.0 if facing_camera else 90.0) + 180.0 * next(uniforms)
    if next(uniforms) < TUMBLE_PROBABILITY:
        pose['roll'] = -90.0 + 180.0 * next(uniforms)
    else:
        pose['roll'] = _clip(float(rng.normal(0.0, ROLL_STD_DEG)), -ROLL_MAX_DEG, ROLL_MAX_DEG)
    return pose


def _yaw_matrix(yaw_deg):
    """Rotation about the vertical (y, pointing down) axis: the person's front (+z) turns to +x."""
    c, s = math.cos(math.radians(yaw_deg)), math.sin(math.radians(yaw_deg))
    return np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])


def skeleton_3d(pose, body):
    """3-D points (len(POINT_INDEX), 3) and body axes of a posed person, hip centre at the origin.

    Frame: x = image right, y = down, z = towards the camera (a person facing the camera has its
    left on +x). Units: standing height. Returns (points, axes): axes maps 'head' to the (front,
    up, left) unit vectors of the head and 'torso' to the (left, front) ones of the chest, after
    the yaw.
    """
    rad = {name: math.radians(value) for name, value in pose.items()}
    x_axis, down, z_axis = np.eye(3)
    points = np.zeros((len(POINT_INDEX), 3))

    def put(name, value):
        points[POINT_INDEX[name]] = value

    # Spine: lean forward (towards +z) and sideways, then the torso frame around it.
    pitch, lateral = rad['spine_pitch'], rad['spine_lateral']
    spine_up = _unit(-down * math.cos(pitch) * math.cos(lateral) + z_axis * math.sin(pitch)
                     + x_axis * math.sin(lateral))
    torso_left = _orthogonal_unit(x_axis, spine_up, z_axis)
    torso_front = _cross(spine_up, torso_left)
    shoulder_center = spine_up * body['torso']
    put('hip_center', np.zeros(3))
    put('shoulder_center', shoulder_center)

    for side, sign in SIDES:
        # Arm, in the torso frame.
        outward = sign * torso_left
        shoulder = shoulder_center + outward * body['shoulder_half_width']
        abduction, flexion = rad[f'{side}_arm_abduction'], rad[f'{side}_arm_flexion']
        upper = (math.cos(abduction) * (-spine_up * math.cos(flexion) + torso_front * math.sin(flexion))
                 + outward * math.sin(abduction))
        elbow = shoulder + upper * body['upper_arm']
        twist = rad[f'{side}_forearm_twist']
        bend = _orthogonal_unit(torso_front * math.cos(twist) - outward * math.sin(twist), upper, spine_up)
        fore = math.cos(rad[f'{side}_elbow']) * upper + math.sin(rad[f'{side}_elbow']) * bend
        wrist = elbow + fore * body['forearm']
        put(f'{side}_shoulder', shoulder)
        put(f'{side}_elbow', elbow)
        put(f'{side}_wrist', wrist)
        put(f'{side}_hand_tip', wrist + fore * body['hand'])

        # Leg, in the pelvis frame (no lean): the knee bends the shin backwards in the thigh's plane.
        hip = x_axis * sign * body['hip_half_width']
        hip_flexion, hip_abduction = rad[f'{side}_hip_flexion'], rad[f'{side}_hip_abduction']
        sagittal = down * math.cos(hip_flexion) + z_axis * math.sin(hip_flexion)
        thigh = math.cos(hip_abduction) * sagittal + math.sin(hip_abduction) * sign * x_axis
        backwards = -z_axis * math.cos(hip_flexion) + down * math.sin(hip_flexion)
        shin = math.cos(rad[f'{side}_knee']) * thigh + math.sin(rad[f'{side}_knee']) * backwards
        knee = hip + thigh * body['thigh']
        ankle = knee + shin * body['shin']
        foot = _orthogonal_unit(z_axis, shin, down) * 0.9 + shin * 0.3
        put(f'{side}_hip', hip)
        put(f'{side}_knee', knee)
        put(f'{side}_ankle', ankle)
        put(f'{side}_toe', ankle + _unit(foot) * body['foot'])

    # Head: turned about the spine, nodded down, on top of the neck.
    turn, nod = rad['head_turn'], rad['head_nod']
    turned_front = torso_front * math.cos(turn) + torso_left * math.sin(turn)
    head_front = _unit(turned_front * math.cos(nod) - spine_up * math.sin(nod))
    head_up = _orthogonal_unit(spine_up, head_front, turned_front)
    head_left = _cross(head_front, head_up)  # front x up = left (z x -y = x)
    head_center = shoulder_center + spine_up * body['neck'] + head_up * body['head_radius']
    put('head_center', head_center)
    for name, (direction, _) in FACE_POINTS.items():
        forward, up, left = direction
        direction = _unit(forward * head_front + up * head_up + left * head_left)
        put(name, head_center + FACE_POINT_RADIUS * body['head_radius'] * direction)

    yaw = _yaw_matrix(pose['yaw'])
    axes = {'head': tuple(yaw @ axis for axis in (head_front, head_up, head_left)),
            'torso': tuple(yaw @ axis for axis in (torso_left, torso_front))}
    return points @ yaw.T, axes


def face_points_away(head_axes):
    """(17,) bool: face keypoints on the far side of the head (hidden by the head itself)."""
    front, up, left = head_axes
    away = np.zeros(NUM_COCO_KEYPOINTS, dtype=bool)
    for name, (direction, min_towards_camera) in FACE_POINTS.items():
        normal = _unit(direction[0] * front + direction[1] * up + direction[2] * left)
        away[KP[name]] = normal[2] < min_towards_camera
    return away


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
        self.depths = points_3d[:, 2]                            # units of height, + = nearer
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
            parts.append((part_depth, PART_ID[name], 'capsule',
                          (self.point(start), self.point(end), self._radius(radius_key)), role))
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
            half = width * math.hypot(half_width * np.dot(self.torso_left_2d, across),
                                      half_depth * np.dot(self.torso_front_2d, across))
            sides.setdefault(role, []).append((center + half * across, center - half * across))
        return [(np.array([a for a, _ in levels] + [b for _, b in reversed(levels)]), role)
                for role, levels in sides.items()]

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
        'skin': skin, 'shirt': shirt, 'trousers': trousers,
        'sleeve': shirt if rng.random() < 0.5 else skin,  # long or short sleeves
        'leg': trousers if rng.random() < 0.8 else skin,  # trousers or shorts
        'hair': np.array(HAIR_COLOURS[rng.integers(len(HAIR_COLOURS))], dtype=np.float64),
        'shoe': np.array(SHOE_COLOURS[rng.integers(len(SHOE_COLOURS))], dtype=np.float64),
    }
    return {role: _shades(colour) for role, colour in palette.items()}


def _shades(colour):
    """(shadow, base, highlight) BGR int tuples of a colour."""
    channels = [float(v) for v in colour]
    return tuple(tuple(int(_clip(v * factor + add, 0.0, 255.0)) for v in channels) for factor, add in SHADE_FACTORS)


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
                cv2.circle(image, _fixed(figure.point(eye)), max(int(radius * 0.12 * FIXED_ONE), FIXED_ONE),
                           (30, 30, 30), -1, cv2.LINE_AA, FIXED_POINT_SHIFT)
        cv2.circle(image, _fixed(figure.point('nose')), max(int(radius * 0.1 * FIXED_ONE), FIXED_ONE),
                   skin_shadow, -1, cv2.LINE_AA, FIXED_POINT_SHIFT)


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


def _finish(rng, image):
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


# ==================================================================================== composition
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


def place_people(rng, height, width, max_people, min_person_height=MIN_PERSON_HEIGHT,
                 max_person_height=MAX_PERSON_HEIGHT_TO_IMAGE, people_inside=False):
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


def _keypoint_flags(figure, label, figure_map, part_map, box, height, width):
    """(17, 3) COCO [x, y, v] with honest flags read off the masks (see the module docstring)."""
    x0, y0 = box[:2]
    owners = KEYPOINT_PART_IDS
    result = []
    for k, (x, y) in enumerate(np.round(figure.keypoints, 2)):
        x, y = float(x), float(y)
        if not (0.0 <= x <= width - 1 and 0.0 <= y <= height - 1):
            result.append((0.0, 0.0, 0))
            continue
        column, row = int(math.floor(x + 0.5)), int(math.floor(y + 0.5))
        visible = (figure_map[row, column] == label
                   and part_map[row - y0, column - x0] in owners[k]
                   and not figure.faces_away[k])
        result.append((x, y, 2 if visible else 1))
    return result


def _mask_polygons(mask, origin):
    """COCO polygons of a binary mask's outer contours.

    COCO polygons (pycocotools' rasteriser) see pixel i as the square [i, i + 1), while contours
    (and keypoints, and cv2 drawing) put pixel i's centre at i. The contour is traced on the mask
    upsampled 2 x and mapped back to run a quarter pixel inside the mask's outer pixel edges, so
    that the polygon rasterises back to (nearly) the same pixels even for 3-pixel-wide limbs.
    """
    doubled = cv2.resize(mask.astype(np.uint8), None, fx=2, fy=2, interpolation=cv2.INTER_NEAREST)
    contours, _ = cv2.findContours(doubled, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    origin = np.asarray(origin, dtype=np.float64)
    return [(contour.reshape(-1, 2) / 2 + 0.25 + origin).reshape(-1).tolist()
            for contour in contours if len(contour) >= 3]


def _mask_bbox(mask, origin=(0, 0)):
    rows, columns = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    x0, y0 = columns[0] + origin[0], rows[0] + origin[1]
    return [float(x0), float(y0), float(columns[-1] - columns[0] + 1), float(rows[-1] - rows[0] + 1)]


def rle_encode(mask):
    """Uncompressed COCO RLE (column-major run lengths, starting with a run of zeros)."""
    flat = np.asarray(mask, dtype=np.uint8).ravel(order='F')
    changes = np.flatnonzero(np.diff(flat)) + 1
    counts = np.diff(np.concatenate(([0], changes, [flat.size]))).tolist()
    if flat.size and flat[0]:
        counts = [0] + counts
    return {'counts': counts, 'size': [int(mask.shape[0]), int(mask.shape[1])]}


def _person_annotation(image_id, keypoints, visible, box):
    bbox = _mask_bbox(visible, box[:2])
    polygons = _mask_polygons(visible, box[:2])
    if not polygons:  # slivers too thin for a contour of 3 points: fall back to the box
        x, y, w, h = bbox
        polygons = [[x, y, x + w, y, x + w, y + h, x, y + h]]
    return {
        'image_id': image_id, 'category_id': 1, 'iscrowd': 0,
        'keypoints': [v for point in keypoints for v in point],
        'num_keypoints': sum(1 for point in keypoints if point[2] > 0),
        'bbox': bbox, 'area': int(visible.sum()), 'segmentation': polygons,
    }


def _crowd_annotation(image_id, region):
    return {
        'image_id': image_id, 'category_id': 1, 'iscrowd': 1,
        'keypoints': [0] * (3 * NUM_COCO_KEYPOINTS), 'num_keypoints': 0,
        'bbox': _mask_bbox(region), 'area': int(region.sum()), 'segmentation': rle_encode(region),
    }


def image_rng(seed, index):
    """The generator of image ``index``: independent of every other image, so any order or process
    gives the same image."""
    return np.random.default_rng([int(seed), int(index)])


def render_image(index, seed=0, width=640, height=480, max_people=4, crowd_probability=CROWD_PROBABILITY,
                 debug=False, min_person_height=MIN_PERSON_HEIGHT, max_person_height=MAX_PERSON_HEIGHT_TO_IMAGE,
                 people_inside=False, clutter_shapes=CLUTTER_SHAPES):
    """Render image ``index`` of the data set of ``seed``.

    Returns:
        (image_bgr (H, W, 3) uint8, annotations) where annotations are COCO dicts without 'id'
        (image_id = index + 1): people in draw order (far to near), then the crowd region if any.
        With ``debug``, a third value: {'figures': per drawn person in draw order, a dict with
        'own_mask' (H, W) bool (all its pixels), 'visible_mask' (not covered by a later person),
        'part_map' (H, W) uint8 (PART_ID of its top-most part per pixel), 'faces_away' (17,) bool,
        'pose' (the sampled angles), 'annotation_index' (into annotations, None if too small);
        'crowd_mask': (H, W) bool visible crowd region or None; 'figure_map': (H, W) uint8}.
    """
    rng = image_rng(seed, index)
    image_id = index + 1
    image = draw_background(rng, height, width, clutter_shapes)
    light_angle = math.radians(-90 + rng.uniform(-60, 60))  # mostly from above
    light = np.array([math.cos(light_angle), math.sin(light_angle)])
    figure_map = np.zeros((height, width), dtype=np.uint8)
    if rng.random() < crowd_probability:
        draw_crowd(rng, image, figure_map, light)
    figures = place_people(rng, height, width, max_people, min_person_height, max_person_height, people_inside)

    drawn = []  # (figure, label, box, part map of the box)
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
    image = _finish(rng, image)

    annotations, annotation_indices = [], []
    for figure, label, box, part_map in drawn:
        x0, y0, x1, y1 = box
        visible = figure_map[y0:y1, x0:x1] == label
        if visible.sum() < MIN_ANNOTATED_AREA:
            annotation_indices.append(None)
            continue
        keypoints = _keypoint_flags(figure, label, figure_map, part_map, box, height, width)
        annotation_indices.append(len(annotations))
        annotations.append(_person_annotation(image_id, keypoints, visible, box))
    crowd_region = figure_map == CROWD_LABEL
    has_crowd = bool(crowd_region.any())
    if has_crowd:
        annotations.append(_crowd_annotation(image_id, crowd_region))
    if not debug:
        return image, annotations
    return image, annotations, _debug_info(drawn, annotation_indices, figure_map, crowd_region if has_crowd else None)


def _debug_info(drawn, annotation_indices, figure_map, crowd_region):
    figures = []
    for (figure, label, box, part_map), annotation_index in zip(drawn, annotation_indices):
        x0, y0, x1, y1 = box
        full_part_map = np.zeros_like(figure_map)
        full_part_map[y0:y1, x0:x1] = part_map
        figures.append({'own_mask': full_part_map > 0, 'visible_mask': figure_map == label,
                        'part_map': full_part_map, 'faces_away': figure.faces_away.copy(),
                        'pose': dict(figure.pose), 'annotation_index': annotation_index})
    return {'figures': figures, 'crowd_mask': crowd_region, 'figure_map': figure_map}


# ======================================================================================== writing
def image_file_name(index, image_format='jpg'):
    return f'{index + 1:012d}.{image_format}'


def _render_and_write(index, images_dir, seed, image_format, **scene):
    image, annotations = render_image(index, seed, **scene)
    file_name = image_file_name(index, image_format)
    parameters = [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY] if image_format == 'jpg' else []
    ok, encoded = cv2.imencode(f'.{image_format}', image, parameters)
    if not ok:
        raise RuntimeError(f'could not encode {file_name}')
    atomic.write_bytes(pathlib.Path(images_dir) / file_name, encoded.tobytes())
    entry = {'id': index + 1, 'file_name': file_name, 'width': image.shape[1], 'height': image.shape[0]}
    return entry, annotations


def generate_dataset(out_dir, num_images, seed=0, width=640, height=480, max_people=4,
                     crowd_probability=CROWD_PROBABILITY, image_format='jpg', workers=1, progress=False,
                     min_person_height=MIN_PERSON_HEIGHT, max_person_height=MAX_PERSON_HEIGHT_TO_IMAGE,
                     people_inside=False, clutter_shapes=CLUTTER_SHAPES):
    """Write a COCO person-keypoints data set: ``out_dir/images/*.jpg`` and ``out_dir/annotations.json``.

    Deterministic: the same arguments give the same bytes, whatever ``workers``.

    Args:
        image_format: 'jpg' (quality JPEG_QUALITY) or 'png'.
        workers: processes rendering images in parallel (1: this process).
        progress: show a tqdm bar.
        min_person_height: smallest standing height in pixels (heights are log-uniform from it up).
        max_person_height: largest standing height, as a fraction of the image height.
        people_inside: keep every person wholly inside the image (default: some are cut by its border).
        clutter_shapes: (fewest, most) random background shapes per image.
    Returns:
        pathlib.Path of the annotation JSON.
    """
    if image_format not in ('jpg', 'png'):
        raise ValueError(f"image_format must be 'jpg' or 'png', got {image_format!r}")
    if not 1 <= max_people <= 255 - FIRST_PERSON_LABEL:
        raise ValueError(f'max_people must be in [1, {255 - FIRST_PERSON_LABEL}], got {max_people}')
    if not 0 <= clutter_shapes[0] <= clutter_shapes[1]:
        raise ValueError(f'clutter_shapes must be (fewest, most) with 0 <= fewest <= most, got {clutter_shapes}')
    if not 0 < min_person_height <= max_person_height * height:
        raise ValueError(f'need 0 < min_person_height ({min_person_height} px) <= max_person_height x height '
                         f'({max_person_height} x {height} px)')
    out_dir = pathlib.Path(out_dir)
    images_dir = out_dir / 'images'
    images_dir.mkdir(parents=True, exist_ok=True)
    arguments = dict(images_dir=str(images_dir), seed=seed, width=width, height=height, max_people=max_people,
                     crowd_probability=crowd_probability, image_format=image_format,
                     min_person_height=min_person_height, max_person_height=max_person_height,
                     people_inside=people_inside, clutter_shapes=tuple(clutter_shapes))
    indices = range(num_images)
    pool = None
    if workers > 1:
        import functools
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor
        # 'spawn', not fork: the caller may have jax (multithreaded) loaded, and forking it can deadlock.
        pool = ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context('spawn'))
        results = pool.map(functools.partial(_render_and_write, **arguments), indices, chunksize=4)
    else:
        results = (_render_and_write(index, **arguments) for index in indices)
    if progress:
        from tqdm import tqdm
        results = tqdm(results, total=num_images, desc='synthetic images', unit='img')
    coco = {'info': {'description': f'lwop_jax synthetic people, seed {seed}', 'version': '1.0'},
            'licenses': [], 'images': [], 'annotations': [], 'categories': [CATEGORY]}
    try:
        for entry, annotations in results:
            coco['images'].append(entry)
            for annotation in annotations:
                coco['annotations'].append({'id': len(coco['annotations']) + 1, **annotation})
    finally:
        if pool is not None:
            pool.shutdown()
    path = out_dir / 'annotations.json'
    atomic.write_bytes(path, json.dumps(coco, separators=(',', ':')).encode())
    return path


def main(argv=None):
    parser = argparse.ArgumentParser(description='Generate a synthetic COCO person-keypoints data set.')
    parser.add_argument('--out', required=True, type=pathlib.Path, help='output folder')
    parser.add_argument('--num-images', required=True, type=int)
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--width', type=int, default=640)
    parser.add_argument('--height', type=int, default=480)
    parser.add_argument('--max-people', type=int, default=4)
    parser.add_argument('--crowd-probability', type=float, default=CROWD_PROBABILITY)
    parser.add_argument('--min-person-height', type=float, default=MIN_PERSON_HEIGHT, help='pixels')
    parser.add_argument('--max-person-height', type=float, default=MAX_PERSON_HEIGHT_TO_IMAGE,
                        help='fraction of the image height')
    parser.add_argument('--people-inside', action='store_true', help='no person cut by the image border')
    parser.add_argument('--clutter-shapes', type=int, nargs=2, default=CLUTTER_SHAPES, metavar=('FEWEST', 'MOST'),
                        help='random background shapes per image')
    parser.add_argument('--format', choices=('jpg', 'png'), default='jpg')
    parser.add_argument('--workers', type=int, default=1, help='rendering processes')
    args = parser.parse_args(argv)
    path = generate_dataset(args.out, args.num_images, args.seed, args.width, args.height, args.max_people,
                            args.crowd_probability, args.format, args.workers, progress=True,
                            min_person_height=args.min_person_height, max_person_height=args.max_person_height,
                            people_inside=args.people_inside, clutter_shapes=tuple(args.clutter_shapes))
    print(path)


if __name__ == '__main__':
    main()
