"""Keypoint and limb tables of Lightweight OpenPose, as data, in one place.

Internal keypoint order (18 points, the original's): the 17 COCO keypoints reordered, with a
synthetic *neck* (mid-shoulder) at index 1. Every other module indexes through these tables.
"""

import numpy as np

NUM_KEYPOINTS = 18
NUM_HEATMAPS = 19  # 18 keypoints + background
NUM_PAFS = 38  # 19 limbs x (x, y)

KEYPOINT_NAMES = (
    'nose',
    'neck',
    'r_sho',
    'r_elb',
    'r_wri',
    'l_sho',
    'l_elb',
    'l_wri',
    'r_hip',
    'r_knee',
    'r_ank',
    'l_hip',
    'l_knee',
    'l_ank',
    'r_eye',
    'l_eye',
    'r_ear',
    'l_ear',
)

# Decoder limbs (modules/keypoints.py BODY_PARTS_KPT_IDS / BODY_PARTS_PAF_IDS): keypoint pair and the
# PAF channels (x, y) of each limb, in the order the greedy grouping visits them. The last two
# (shoulder -> ear) are only used to fill empty ear slots.
BODY_PARTS_KPT_IDS = (
    (1, 2),
    (1, 5),
    (2, 3),
    (3, 4),
    (5, 6),
    (6, 7),
    (1, 8),
    (8, 9),
    (9, 10),
    (1, 11),
    (11, 12),
    (12, 13),
    (1, 0),
    (0, 14),
    (14, 16),
    (0, 15),
    (15, 17),
    (2, 16),
    (5, 17),
)
BODY_PARTS_PAF_IDS = (
    (12, 13),
    (20, 21),
    (14, 15),
    (16, 17),
    (22, 23),
    (24, 25),
    (0, 1),
    (2, 3),
    (4, 5),
    (6, 7),
    (8, 9),
    (10, 11),
    (28, 29),
    (30, 31),
    (34, 35),
    (32, 33),
    (36, 37),
    (18, 19),
    (26, 27),
)

# Training limbs (datasets/coco.py BODY_PARTS_KPT_IDS): limb k is drawn into PAF channels 2k, 2k+1.
PAF_LIMBS = (
    (1, 8),
    (8, 9),
    (9, 10),
    (1, 11),
    (11, 12),
    (12, 13),
    (1, 2),
    (2, 3),
    (3, 4),
    (2, 16),
    (1, 5),
    (5, 6),
    (6, 7),
    (5, 17),
    (1, 0),
    (0, 14),
    (0, 15),
    (14, 16),
    (15, 17),
)

# COCO keypoint index (0..16) of each internal keypoint; the neck (internal 1) has none (-1).
# Same table as val.py's to_coco_map; ConvertKeypoints is its inverse plus the neck.
INTERNAL_TO_COCO = (0, -1, 6, 8, 10, 5, 7, 9, 12, 14, 16, 11, 13, 15, 2, 1, 4, 3)
COCO_KEYPOINT_NAMES = (
    'nose',
    'left_eye',
    'right_eye',
    'left_ear',
    'right_ear',
    'left_shoulder',
    'right_shoulder',
    'left_elbow',
    'right_elbow',
    'left_wrist',
    'right_wrist',
    'left_hip',
    'right_hip',
    'left_knee',
    'right_knee',
    'left_ankle',
    'right_ankle',
)
NUM_COCO_KEYPOINTS = len(COCO_KEYPOINT_NAMES)
COCO_SKELETON = (  # 1-based, as in COCO's categories[0]['skeleton']
    (16, 14),
    (14, 12),
    (17, 15),
    (15, 13),
    (12, 13),
    (6, 12),
    (7, 13),
    (6, 7),
    (6, 8),
    (7, 9),
    (8, 10),
    (9, 11),
    (2, 3),
    (1, 2),
    (1, 3),
    (2, 4),
    (3, 5),
    (4, 6),
    (5, 7),
)

# Left/right pairs in internal order: a horizontal flip swaps them.
FLIP_PAIRS = ((2, 5), (3, 6), (4, 7), (8, 11), (9, 12), (10, 13), (14, 15), (16, 17))


def _flip_permutation():
    perm = list(range(NUM_KEYPOINTS))
    for a, b in FLIP_PAIRS:
        perm[a], perm[b] = b, a
    return tuple(perm)


# FLIP_KEYPOINTS[k] = index of the keypoint that k becomes after a horizontal flip.
FLIP_KEYPOINTS = _flip_permutation()

# Per-keypoint OKS sigmas of the original tracker (modules/pose.py), internal order.
POSE_SIGMAS = (
    np.array(
        [0.26, 0.79, 0.79, 0.72, 0.62, 0.79, 0.72, 0.62, 1.07, 0.87, 0.89, 1.07, 0.87, 0.89, 0.25, 0.25, 0.35, 0.35],
        dtype=np.float32,
    )
    / 10.0
)
POSE_VARS = (POSE_SIGMAS * 2) ** 2

# Drawing: the original draws every limb but the two shoulder-ear ones in one colour (BGR).
POSE_COLOR = (0, 224, 255)
DRAW_LIMBS = BODY_PARTS_KPT_IDS[:-2]
