"""The body model: proportions, joint limits, pose sampling and the 3-D skeleton of one person.

Tables of the body (segment lengths, limb radii, torso silhouette, joint limits, pose families, face
points, the parts and which keypoints they own) and the functions that turn a random pose into 3-D
points: :func:`sample_body`, :func:`sample_pose`, :func:`skeleton_3d`, :func:`face_points_away`.
NumPy only.
"""

import math

import numpy as np

from lwop_jax.skeleton import COCO_KEYPOINT_NAMES, NUM_COCO_KEYPOINTS

# =========================================================================================== tables
KP = {name: index for index, name in enumerate(COCO_KEYPOINT_NAMES)}
SIDES = (('left', 1.0), ('right', -1.0))  # side name and sign of its lateral axis (+x = the person's left)

# Segment lengths and body widths, as fractions of the standing height (after Drillis & Contini):
# with the ankle 0.04 above the floor, the hip joints come at 0.53, the shoulders at 0.82 and the
# top of the head at ~1.0.
BODY_LENGTHS = {
    'torso': 0.29,  # hip-joint line to shoulder line
    'shoulder_half_width': 0.115,
    'hip_half_width': 0.075,  # hip joints, narrower than the pelvis
    'neck': 0.04,  # shoulder line to the bottom of the head sphere
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
    'upper_arm': 0.030,
    'forearm': 0.025,
    'hand': 0.021,
    'thigh': 0.048,
    'shin': 0.036,
    'foot': 0.020,
    'neck': 0.026,
}
LENGTH_JITTER = 0.04  # relative std of each length, per person
WIDTH_JITTER = (0.85, 1.2)  # build: all widths and radii times this, per person
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
    'arm_abduction': (-10, 175),
    'arm_flexion': (-50, 170),
    'elbow': (0, 150),
    'forearm_twist': (-30, 90),
    'hip_flexion': (-30, 125),
    'hip_abduction': (-15, 60),
    'knee': (0, 150),
    'spine_pitch': (-20, 45),
    'spine_lateral': (-20, 20),
    'head_turn': (-60, 60),
    'head_nod': (-25, 35),
}
# Pose families: sampling weight and the (low, high) range of each angle; angles not listed are
# drawn from DEFAULT_POSE_RANGES. 'gait' swings the legs (and the opposite arms) in anti-phase.
DEFAULT_POSE_RANGES = {
    'forearm_twist': (-20, 60),
    'spine_pitch': (-5, 20),
    'spine_lateral': (-6, 6),
    'head_turn': (-35, 35),
    'head_nod': (-10, 20),
    'gait': (0, 0),
}
POSE_FAMILIES = {
    'stand': dict(
        weight=3,
        arm_abduction=(3, 25),
        arm_flexion=(-15, 25),
        elbow=(0, 40),
        hip_flexion=(-5, 10),
        hip_abduction=(0, 12),
        knee=(0, 10),
        spine_pitch=(-5, 8),
    ),
    'walk': dict(
        weight=3,
        arm_abduction=(3, 15),
        arm_flexion=(-5, 5),
        elbow=(5, 40),
        hip_flexion=(0, 5),
        hip_abduction=(0, 5),
        knee=(5, 35),
        spine_pitch=(0, 8),
        gait=(15, 30),
    ),
    'run': dict(
        weight=1,
        arm_abduction=(5, 20),
        arm_flexion=(-5, 5),
        elbow=(70, 110),
        hip_flexion=(10, 25),
        hip_abduction=(0, 8),
        knee=(30, 100),
        spine_pitch=(5, 20),
        gait=(25, 45),
    ),
    'gesture': dict(
        weight=2,
        arm_abduction=(20, 170),
        arm_flexion=(-10, 110),
        elbow=(0, 130),
        hip_flexion=(-5, 10),
        hip_abduction=(0, 15),
        knee=(0, 15),
        spine_pitch=(-8, 10),
    ),
    'sit': dict(
        weight=1,
        arm_abduction=(0, 20),
        arm_flexion=(10, 50),
        elbow=(40, 100),
        hip_flexion=(75, 100),
        hip_abduction=(0, 20),
        knee=(70, 100),
        spine_pitch=(-10, 10),
    ),
    'crouch': dict(
        weight=1,
        arm_abduction=(0, 40),
        arm_flexion=(20, 80),
        elbow=(20, 100),
        hip_flexion=(90, 120),
        hip_abduction=(5, 30),
        knee=(100, 140),
        spine_pitch=(15, 40),
    ),
    'free': dict(
        weight=1,
        **{
            name: limits
            for name, limits in JOINT_LIMITS.items()
            if name not in ('spine_pitch', 'spine_lateral', 'head_turn', 'head_nod')
        },
    ),
}
FACING_CAMERA_PROBABILITY = 0.7  # yaw within +-90 degrees (else seen from the back half)
ROLL_STD_DEG, ROLL_MAX_DEG = 7.0, 20.0  # in-plane rotation of a person
TUMBLE_PROBABILITY = 0.04  # ...or, rarely, anything in +-90 degrees (acrobatics, lying)

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
EXTRA_POINTS = (
    'shoulder_center',
    'hip_center',
    'head_center',
    'left_hand_tip',
    'right_hand_tip',
    'left_toe',
    'right_toe',
)
POINT_INDEX = {name: index for index, name in enumerate(COCO_KEYPOINT_NAMES + EXTRA_POINTS)}
LIMB_PARTS = tuple(
    part
    for side, _ in SIDES
    for part in (
        (f'{side}_upper_arm', f'{side}_shoulder', f'{side}_elbow', 'upper_arm', 'shirt'),
        (f'{side}_forearm', f'{side}_elbow', f'{side}_wrist', 'forearm', 'sleeve'),
        (f'{side}_hand', f'{side}_wrist', f'{side}_hand_tip', 'hand', 'skin'),
        (f'{side}_thigh', f'{side}_hip', f'{side}_knee', 'thigh', 'trousers'),
        (f'{side}_shin', f'{side}_knee', f'{side}_ankle', 'shin', 'leg'),
        (f'{side}_foot', f'{side}_ankle', f'{side}_toe', 'foot', 'shoe'),
    )
) + (('neck', 'shoulder_center', 'head_center', 'neck', 'skin'),)
PART_NAMES = ('torso', 'head') + tuple(part[0] for part in LIMB_PARTS)
PART_ID = {name: index + 1 for index, name in enumerate(PART_NAMES)}  # 0 = background in part maps

# The parts each COCO keypoint belongs to (dataset_skeleton.BODY_POINT_PARTS adds the extra points): it
# is visible (v=2) when the top-most part of its own person at its pixel is one of these. The torso owns
# no joint: a shoulder or hip seen through the torso is hidden behind it.
KEYPOINT_PARTS = {
    **dict.fromkeys(FACE_POINTS, ('head',)),
    **{
        f'{side}_{joint}': tuple(f'{side}_{part}' for part in parts)
        for side, _ in SIDES
        for joint, parts in (
            ('shoulder', ('upper_arm',)),
            ('elbow', ('upper_arm', 'forearm')),
            ('wrist', ('forearm', 'hand')),
            ('hip', ('thigh',)),
            ('knee', ('thigh', 'shin')),
            ('ankle', ('shin', 'foot')),
        )
    },
}

# Depth of the torso, neck and head relative to the limbs (units of height, + = nearer): limbs level
# with the body centre are painted over the torso, and the head over the neck and torso.
TORSO_DEPTH_BIAS, NECK_DEPTH_BIAS, HEAD_DEPTH_BIAS = -0.005, -0.003, 0.02
MIN_LIMB_THICKNESS = 3  # pixels: every keypoint stays inside its part's mask


# ========================================================================================= 3-D pose
def clip(value, low, high):
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
    lengths = {name: value * clip(factor, 0.88, 1.12) for (name, value), factor in zip(BODY_LENGTHS.items(), factors)}
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
        return clip(value, *JOINT_LIMITS[name]) if name in JOINT_LIMITS else value

    pose = {name: draw(name) for name in ('spine_pitch', 'spine_lateral', 'head_turn', 'head_nod')}
    swing = draw('gait') * (1.0 if next(uniforms) < 0.5 else -1.0)
    for side, sign in SIDES:
        for name in ('arm_abduction', 'arm_flexion', 'elbow', 'forearm_twist', 'hip_abduction', 'knee'):
            pose[f'{side}_{name}'] = draw(name)
        pose[f'{side}_hip_flexion'] = clip(draw('hip_flexion') + sign * swing, *JOINT_LIMITS['hip_flexion'])
        # Arms swing against the leg of their side.
        pose[f'{side}_arm_flexion'] = clip(
            pose[f'{side}_arm_flexion'] - 0.8 * sign * swing, *JOINT_LIMITS['arm_flexion']
        )
    # Most people in photos face the camera more or less.
    facing_camera = next(uniforms) < FACING_CAMERA_PROBABILITY
    pose['yaw'] = (-90.0 if facing_camera else 90.0) + 180.0 * next(uniforms)
    if next(uniforms) < TUMBLE_PROBABILITY:
        pose['roll'] = -90.0 + 180.0 * next(uniforms)
    else:
        pose['roll'] = clip(float(rng.normal(0.0, ROLL_STD_DEG)), -ROLL_MAX_DEG, ROLL_MAX_DEG)
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
    torso = _torso_frame(rad)
    shoulder_center = torso[0] * body['torso']
    named = {'hip_center': np.zeros(3), 'shoulder_center': shoulder_center}
    for side, sign in SIDES:
        named.update(_arm_points(rad, body, side, sign, shoulder_center, torso))
        named.update(_leg_points(rad, body, side, sign))
    head_axes, head_points = _head_points(rad, body, shoulder_center, torso)
    named.update(head_points)
    points = np.zeros((len(POINT_INDEX), 3))
    for name, value in named.items():
        points[POINT_INDEX[name]] = value

    _, torso_left, torso_front = torso
    yaw = _yaw_matrix(pose['yaw'])
    axes = {
        'head': tuple(yaw @ axis for axis in head_axes),
        'torso': tuple(yaw @ axis for axis in (torso_left, torso_front)),
    }
    return points @ yaw.T, axes


def _torso_frame(rad):
    """(spine_up, torso_left, torso_front) unit vectors: the spine leans forward (towards +z) and
    sideways, and the torso frame is built around it."""
    x_axis, down, z_axis = np.eye(3)
    pitch, lateral = rad['spine_pitch'], rad['spine_lateral']
    spine_up = _unit(
        -down * math.cos(pitch) * math.cos(lateral) + z_axis * math.sin(pitch) + x_axis * math.sin(lateral)
    )
    torso_left = _orthogonal_unit(x_axis, spine_up, z_axis)
    torso_front = _cross(spine_up, torso_left)
    return spine_up, torso_left, torso_front


def _arm_points(rad, body, side, sign, shoulder_center, torso):
    """Shoulder, elbow, wrist and hand tip of one side, in the torso frame."""
    spine_up, torso_left, torso_front = torso
    outward = sign * torso_left
    shoulder = shoulder_center + outward * body['shoulder_half_width']
    abduction, flexion = rad[f'{side}_arm_abduction'], rad[f'{side}_arm_flexion']
    upper = math.cos(abduction) * (
        -spine_up * math.cos(flexion) + torso_front * math.sin(flexion)
    ) + outward * math.sin(abduction)
    elbow = shoulder + upper * body['upper_arm']
    twist = rad[f'{side}_forearm_twist']
    bend = _orthogonal_unit(torso_front * math.cos(twist) - outward * math.sin(twist), upper, spine_up)
    fore = math.cos(rad[f'{side}_elbow']) * upper + math.sin(rad[f'{side}_elbow']) * bend
    wrist = elbow + fore * body['forearm']
    return {
        f'{side}_shoulder': shoulder,
        f'{side}_elbow': elbow,
        f'{side}_wrist': wrist,
        f'{side}_hand_tip': wrist + fore * body['hand'],
    }


def _leg_points(rad, body, side, sign):
    """Hip, knee, ankle and toe of one side, in the pelvis frame (no lean): the knee bends the shin
    backwards in the thigh's plane."""
    x_axis, down, z_axis = np.eye(3)
    hip = x_axis * sign * body['hip_half_width']
    hip_flexion, hip_abduction = rad[f'{side}_hip_flexion'], rad[f'{side}_hip_abduction']
    sagittal = down * math.cos(hip_flexion) + z_axis * math.sin(hip_flexion)
    thigh = math.cos(hip_abduction) * sagittal + math.sin(hip_abduction) * sign * x_axis
    backwards = -z_axis * math.cos(hip_flexion) + down * math.sin(hip_flexion)
    shin = math.cos(rad[f'{side}_knee']) * thigh + math.sin(rad[f'{side}_knee']) * backwards
    knee = hip + thigh * body['thigh']
    ankle = knee + shin * body['shin']
    foot = _orthogonal_unit(z_axis, shin, down) * 0.9 + shin * 0.3
    return {
        f'{side}_hip': hip,
        f'{side}_knee': knee,
        f'{side}_ankle': ankle,
        f'{side}_toe': ankle + _unit(foot) * body['foot'],
    }


def _head_points(rad, body, shoulder_center, torso):
    """((front, up, left) unit axes of the head, {name: point} of its centre and face points): the
    head turned about the spine, nodded down, on top of the neck."""
    spine_up, torso_left, torso_front = torso
    turn, nod = rad['head_turn'], rad['head_nod']
    turned_front = torso_front * math.cos(turn) + torso_left * math.sin(turn)
    head_front = _unit(turned_front * math.cos(nod) - spine_up * math.sin(nod))
    head_up = _orthogonal_unit(spine_up, head_front, turned_front)
    head_left = _cross(head_front, head_up)  # front x up = left (z x -y = x)
    head_center = shoulder_center + spine_up * body['neck'] + head_up * body['head_radius']
    points = {'head_center': head_center}
    for name, (direction, _) in FACE_POINTS.items():
        forward, up, left = direction
        direction = _unit(forward * head_front + up * head_up + left * head_left)
        points[name] = head_center + FACE_POINT_RADIUS * body['head_radius'] * direction
    return (head_front, head_up, head_left), points


def face_points_away(head_axes):
    """(17,) bool: face keypoints on the far side of the head (hidden by the head itself)."""
    front, up, left = head_axes
    away = np.zeros(NUM_COCO_KEYPOINTS, dtype=bool)
    for name, (direction, min_towards_camera) in FACE_POINTS.items():
        normal = _unit(direction[0] * front + direction[1] * up + direction[2] * left)
        away[KP[name]] = normal[2] < min_towards_camera
    return away
