"""Typed pose results in image pixels, their export formats (COCO, OpenPose, JSON) and drawing.

A :class:`PoseResult` holds the people found in one image, in the original's order (the decoder's
pose order). Keypoints are in the order of the model's keypoint schema (:mod:`lwop_jax.schema`; coco18,
the original's 18 points and the order OpenPose's COCO model uses too, by default), x and y in pixels of
the image that was passed in.

CPU inference path: NumPy, OpenCV and the standard library only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

from lwop_jax.schema import KeypointSchema, load_schema
from lwop_jax.skeleton import COCO_KEYPOINT_NAMES, NUM_KEYPOINTS

MISSING = (-1.0, -1.0, 0.0)  # a keypoint that was not found: x, y, score
BOX_COLOR = (0, 255, 0)  # the original demo's colours (BGR)
TRACK_ID_COLOR = (0, 0, 255)
DRAW_OPACITY = 0.4  # the original blends the drawn skeleton: 0.6 image + 0.4 drawing


def found_mask(keypoints: np.ndarray) -> np.ndarray:
    """(..., 18, 3) keypoints -> (..., 18) bool: the keypoint was found (its score is > 0).

    The decoder's found keypoints are heatmap peaks >= 0.1; missing ones are (-1, -1, 0). The score
    is used rather than x == -1 (the original's test) because a found keypoint near the left
    border can map to a negative image x.
    """
    return np.asarray(keypoints)[..., 2] > 0


def bounding_boxes(keypoints: np.ndarray) -> np.ndarray:
    """(N, K, 3) keypoints -> (N, 4) int64 boxes x, y, w, h of the found keypoints.

    Same numbers as the original's ``cv2.boundingRect`` of the int()-truncated keypoints:
    x = min, w = max - min + 1 (so a single point has w = h = 1). A pose without found keypoints
    gets (0, 0, 0, 0), as boundingRect of an empty set.
    """
    keypoints = _persons(keypoints, np.float64)
    found = found_mask(keypoints)
    xy = np.trunc(keypoints[..., :2]).astype(np.int64)  # int(), as the original demo
    big = np.iinfo(np.int64).max
    low = np.where(found[..., None], xy, big).min(axis=1)  # (N, 2)
    high = np.where(found[..., None], xy, -big).max(axis=1)
    boxes = np.concatenate([low, high - low + 1], axis=1)
    boxes[~found.any(axis=1)] = 0
    return boxes


@dataclass(frozen=True, eq=False)  # arrays: == would be ambiguous, compare fields instead
class PoseResult:
    """People found in one image.

    keypoints:     (N, K, 3) float32, the schema's order; x, y in image pixels and the heatmap peak
                   score; a missing keypoint is (-1, -1, 0).
    scores:        (N,) float64, the original ``pose_entries[n][18]`` (keypoint + limb scores).
    num_keypoints: (N,) int64, the original ``pose_entries[n][19]`` (ears added through the
                   shoulder-ear limbs are not counted, as in the original).
    boxes:         (N, 4) int64 x, y, w, h (see :func:`bounding_boxes`).
    track_ids:     (N,) int64 when tracked, else None.
    image_size:    (height, width) of the image.
    track_state:   the tracker's memory for the next frame (see :mod:`lwop_jax.inference.tracking`).
    schema:        the keypoint schema of the model that found them (names, limbs, sigmas).
    """

    keypoints: np.ndarray
    scores: np.ndarray
    num_keypoints: np.ndarray
    boxes: np.ndarray
    image_size: tuple
    track_ids: np.ndarray | None = None
    track_state: Any = field(default=None, repr=False, compare=False)
    schema: KeypointSchema = field(default_factory=load_schema, repr=False, compare=False)

    @classmethod
    def from_keypoints(
        cls, keypoints, scores, image_size, num_keypoints=None, track_ids=None, track_state=None, schema=None
    ) -> PoseResult:
        """Builds a result, computing the boxes; num_keypoints defaults to the found count."""
        schema = schema or load_schema()
        keypoints = np.asarray(keypoints, dtype=np.float32).reshape(-1, schema.num_keypoints, 3)
        scores = np.asarray(scores, dtype=np.float64).reshape(-1)
        if len(scores) != len(keypoints):
            raise ValueError(f'{len(keypoints)} poses but {len(scores)} scores')
        if num_keypoints is None:
            num_keypoints = found_mask(keypoints).sum(axis=1)
        if track_ids is not None:
            track_ids = np.asarray(track_ids, dtype=np.int64).reshape(-1)
        return cls(
            keypoints=keypoints,
            scores=scores,
            num_keypoints=np.asarray(num_keypoints, dtype=np.int64).reshape(-1),
            boxes=bounding_boxes(keypoints),
            image_size=tuple(int(s) for s in image_size),
            track_ids=track_ids,
            track_state=track_state,
            schema=schema,
        )

    @classmethod
    def empty(cls, image_size, schema=None) -> PoseResult:
        schema = schema or load_schema()
        return cls.from_keypoints(np.zeros((0, schema.num_keypoints, 3)), np.zeros(0), image_size, schema=schema)

    def __len__(self):
        return len(self.scores)

    # --------------------------------------------------------------------------------------
    # Export formats
    # --------------------------------------------------------------------------------------

    def coco_scores(self) -> np.ndarray:
        """(N,) val.py's COCO score: pose score x max(0, num_keypoints - 1)."""
        return self.scores * np.maximum(0, self.num_keypoints - 1)

    def to_coco(
        self, image_id: int, pixel_offset: float = 0.5, dataset_names=COCO_KEYPOINT_NAMES, category_id: int = 1
    ) -> list[dict]:
        """COCO keypoint results entries, one per person.

        The dataset's keypoints in its order (``dataset_names``: its category's names, COCO's 17 by
        default; derived keypoints such as coco18's neck dropped), (x + pixel_offset, y + pixel_offset, 1)
        per found keypoint and (0, 0, 0) otherwise, as val.py's convert_to_coco_format (its + 0.5 turns a
        pixel index into the pixel's centre in COCO's continuous coordinates).
        """
        direct = self.schema.dataset_layout(dataset_names, 'the COCO results').direct
        entries = []
        for person, score in zip(self.keypoints.astype(np.float64), self.coco_scores()):
            triples = np.zeros((len(dataset_names), 3))
            for own, index in enumerate(direct):
                if index >= 0 and person[own, 2] > 0:
                    triples[index] = (person[own, 0] + pixel_offset, person[own, 1] + pixel_offset, 1)
            entries.append(
                {
                    'image_id': int(image_id),
                    'category_id': int(category_id),
                    'keypoints': triples.reshape(-1).tolist(),
                    'score': float(score),
                }
            )
        return entries

    def to_openpose(self) -> dict:
        """OpenPose 1.3 JSON: 18 points (x, y, confidence) in COCO-18 order, coco18's order;
        a missing point is (0, 0, 0) as OpenPose writes it. Only for coco18 models (ValueError else)."""
        if self.schema.keypoints != load_schema('coco18').keypoints:
            raise ValueError(f"OpenPose JSON holds the COCO-18 points; this model's schema is {self.schema.name!r}")
        people = []
        for person in self.keypoints.astype(np.float64):
            flat = np.where(person[:, 2:] > 0, person, 0.0).reshape(-1)
            people.append(
                {
                    'pose_keypoints_2d': flat.tolist(),
                    'face_keypoints_2d': [],
                    'hand_left_keypoints_2d': [],
                    'hand_right_keypoints_2d': [],
                    'pose_keypoints_3d': [],
                    'face_keypoints_3d': [],
                    'hand_left_keypoints_3d': [],
                    'hand_right_keypoints_3d': [],
                }
            )
        return {'version': 1.3, 'people': people}

    def to_json(self) -> list[dict]:
        """The people list of infer.py's JSON: keypoints [[x, y, score]] * K in the schema's order
        (missing [-1, -1, 0]), score = pose_entries[n][K], bbox [x, y, w, h], track_id (int or None)."""
        people = []
        for n, person in enumerate(self.keypoints.astype(np.float64)):
            person = np.where(person[:, 2:] > 0, person, MISSING)
            people.append(
                {
                    'keypoints': person.tolist(),
                    'score': float(self.scores[n]),
                    'num_keypoints': int(self.num_keypoints[n]),
                    'bbox': [int(v) for v in self.boxes[n]],
                    'track_id': None if self.track_ids is None else int(self.track_ids[n]),
                }
            )
        return people

    # --------------------------------------------------------------------------------------
    # Drawing
    # --------------------------------------------------------------------------------------

    def draw(self, image: np.ndarray, draw_boxes: bool = True, opacity: float = DRAW_OPACITY) -> np.ndarray:
        """The original demo's picture: skeleton blended at ``opacity``, then the boxes and,
        when tracked, 'id: N' above each box. image: (H, W, 3) uint8 BGR, left unchanged;
        returns a new image."""
        return draw_poses(
            image,
            self.keypoints,
            self.track_ids,
            boxes=self.boxes if draw_boxes else None,
            opacity=opacity,
            schema=self.schema,
        )


def _check_drawable(image):
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f'draw needs an (H, W, 3) uint8 BGR image, got {image.shape} {image.dtype}')
    return image


def _persons(keypoints, dtype) -> np.ndarray:
    """Any (N, K, 3) or (K, 3) keypoints as an (N, K, 3) array (K = 18 when there are none)."""
    keypoints = np.asarray(keypoints, dtype=dtype)
    return keypoints.reshape(-1, keypoints.shape[-2] if keypoints.size else NUM_KEYPOINTS, 3)


def _draw_skeleton(canvas, person, schema: KeypointSchema):
    """Limbs (thickness 2) and their end points (radius 3) of one person, as Pose.draw; a limb and its
    second end in that keypoint's colour (coco18: the original's one colour)."""
    found = person[:, 2] > 0
    points = [(int(x), int(y)) for x, y in person[:, :2]]
    for a, b in schema.drawn_limbs:
        color = schema.colors[b]
        for k in (a, b):
            if found[k]:
                cv2.circle(canvas, points[k], 3, schema.colors[k], -1)
        if found[a] and found[b]:
            cv2.line(canvas, points[a], points[b], color, 2)


def draw_poses(
    image: np.ndarray,
    keypoints: np.ndarray,
    track_ids=None,
    *,
    boxes=None,
    opacity: float = DRAW_OPACITY,
    schema: KeypointSchema | None = None,
) -> np.ndarray:
    """Draws people on a copy of ``image`` like the original demo.

    image: (H, W, 3) uint8 BGR. keypoints: (N, K, 3) x, y, score in image pixels (missing:
    score 0), in the order of ``schema`` (None: coco18). track_ids: (N,) ints or None; when given,
    each person gets its box and 'id: N'.
    boxes: (N, 4) x, y, w, h to draw (computed from the keypoints when track ids are given and
    boxes are not). opacity: weight of the skeleton layer (1 = opaque).
    Returns the drawn (H, W, 3) uint8 image.
    """
    image = _check_drawable(image)
    schema = schema or load_schema()
    keypoints = np.asarray(keypoints, dtype=np.float64).reshape(-1, schema.num_keypoints, 3)
    canvas = image.copy()
    for person in keypoints:
        _draw_skeleton(canvas, person, schema)
    canvas = cv2.addWeighted(image, 1 - opacity, canvas, opacity, 0)
    if boxes is None and track_ids is not None:
        boxes = bounding_boxes(keypoints)
    for n in range(len(keypoints) if boxes is not None else 0):
        x, y, w, h = (int(v) for v in boxes[n])
        cv2.rectangle(canvas, (x, y), (x + w, y + h), BOX_COLOR)
        if track_ids is not None:
            cv2.putText(canvas, f'id: {int(track_ids[n])}', (x, y - 16), cv2.FONT_HERSHEY_COMPLEX, 0.5, TRACK_ID_COLOR)
    return canvas


def keypoint_names(schema: KeypointSchema | None = None) -> list[str]:
    """The schema's keypoint names in order (None: coco18's 18, the original's), for JSON headers."""
    return list((schema or load_schema()).keypoints)
