"""Dataset skeletons: which keypoints a synthetic data set labels, under which names and in which order.

The body model has more points than COCO's 17 (:data:`BODY_POINTS`: COCO's keypoints and
``body.EXTRA_POINTS``). A dataset skeleton picks some of them as its category's keypoints, in its own
order and under its own names, and gives the category its name. ``coco17`` (built in, the default) is
COCO's person category; ``lwop_jax/synthetic/skeletons/<name>.json`` ships others; any JSON file of the
same form works::

    {"name": "figure",                          # the category's name
     "supercategory": "person",                 # optional (default "person")
     "keypoints": [["head", "head_center"],     # [dataset name, body point], in the dataset's order, or a
                   "left_toe", ...],            # body point's name alone (the dataset names it so too)
     "skeleton": [["head", "neck"], ...],       # optional: the category's limbs for viewers, as keypoint
                                                # names or COCO's 1-based index pairs
     "description": "..."}                      # optional, for people

Every body point is flagged honestly (annotations.keypoint_flags): v = 2 when the top-most part of its own
person at its pixel is one of the parts it belongs to (:data:`BODY_POINT_PARTS`). Every problem in a file
is one :class:`SkeletonError` line naming the file and the field. Standard library and the body tables.
"""

from __future__ import annotations

import dataclasses
import functools
import pathlib

from lwop_jax.errors import InputFileError
from lwop_jax.schema import read_json_file
from lwop_jax.skeleton import COCO_KEYPOINT_NAMES, COCO_SKELETON, NUM_COCO_KEYPOINTS
from lwop_jax.synthetic.body import KEYPOINT_PARTS, PART_ID, POINT_INDEX

SKELETON_FOLDER = pathlib.Path(__file__).with_name('skeletons')
DEFAULT_SKELETON = 'coco17'
BODY_POINTS = tuple(POINT_INDEX)  # COCO's 17 keypoints, then body.EXTRA_POINTS

# The parts each body point belongs to (COCO's keypoints: body.KEYPOINT_PARTS). A hand tip ends its hand
# and a toe its foot (the capsules' far ends); the head centre is inside the head's outline. The shoulder
# and hip centres are the ends of the torso's spine, inside the torso polygon: unlike a shoulder or hip
# joint, which sits on the arm or leg and is hidden when seen through the torso, a centre is a point of
# the trunk itself, so the torso owns it (the neck too, for the shoulder centre, where the neck starts).
# Either is hidden when an arm, a leg, the head or another person covers it.
BODY_POINT_PARTS = {
    **KEYPOINT_PARTS,
    'shoulder_center': ('torso', 'neck'),
    'hip_center': ('torso',),
    'head_center': ('head',),
    'left_hand_tip': ('left_hand',),
    'right_hand_tip': ('right_hand',),
    'left_toe': ('left_foot',),
    'right_toe': ('right_foot',),
}
_FIELDS = ('name', 'supercategory', 'keypoints', 'skeleton', 'description')


class SkeletonError(InputFileError):
    """A dataset skeleton that cannot be used; the message names the file and the field."""


@dataclasses.dataclass(frozen=True)
class DatasetSkeleton:
    """A validated dataset skeleton (see the module docstring); ``skeleton`` holds 1-based index pairs."""

    name: str
    keypoints: tuple[str, ...]
    points: tuple[str, ...]  # the body point of each keypoint
    skeleton: tuple[tuple[int, int], ...] = ()
    supercategory: str = 'person'

    @property
    def num_keypoints(self) -> int:
        return len(self.keypoints)

    @functools.cached_property
    def point_indices(self) -> tuple[int, ...]:
        """Rows of each keypoint in the body model's points (``Figure.points``)."""
        return tuple(POINT_INDEX[point] for point in self.points)

    @functools.cached_property
    def owners(self) -> tuple[tuple[int, ...], ...]:
        """Part ids (body.PART_ID) each keypoint belongs to."""
        return tuple(tuple(PART_ID[part] for part in BODY_POINT_PARTS[point]) for point in self.points)

    @property
    def category(self) -> dict:
        """The COCO category (id 1) of a data set labelled with this skeleton."""
        return {
            'id': 1,
            'name': self.name,
            'supercategory': self.supercategory,
            'keypoints': list(self.keypoints),
            'skeleton': [list(pair) for pair in self.skeleton],
        }


COCO17 = DatasetSkeleton('person', COCO_KEYPOINT_NAMES, COCO_KEYPOINT_NAMES, COCO_SKELETON)
assert COCO17.point_indices == tuple(range(NUM_COCO_KEYPOINTS))  # COCO's keypoints come first in the body


def shipped_skeletons() -> tuple[str, ...]:
    return (DEFAULT_SKELETON, *sorted(path.stem for path in SKELETON_FOLDER.glob('*.json')))


def load_skeleton(skeleton: DatasetSkeleton | str | pathlib.Path | None = None) -> DatasetSkeleton:
    """A dataset skeleton: a shipped one by name (``coco17``, None: coco17, ``figure``), a JSON file, or
    a :class:`DatasetSkeleton` (returned as it is). Raises SkeletonError (one line)."""
    if isinstance(skeleton, DatasetSkeleton):
        return skeleton
    if skeleton is None or str(skeleton) == DEFAULT_SKELETON:
        return COCO17
    path = pathlib.Path(skeleton)
    if path.suffix != '.json' and not path.is_file():  # a name, not a file (a folder of that name aside)
        path = SKELETON_FOLDER / f'{skeleton}.json'
        if not path.is_file():
            raise SkeletonError(
                f'{skeleton}: no such dataset skeleton (shipped: {", ".join(shipped_skeletons())}; or a .json file)'
            )
    return skeleton_from_json(read_json_file(path, 'the dataset skeleton', SkeletonError), str(path))


def skeleton_from_json(content, where: str) -> DatasetSkeleton:
    """A dataset skeleton from its JSON object; ``where`` names the file in error messages."""

    def fail(field, problem):
        raise SkeletonError(f'{where}: {field}: {problem}')

    if not isinstance(content, dict):
        raise SkeletonError(f'{where}: a dataset skeleton is a JSON object, not {type(content).__name__}')
    unknown = sorted(set(content) - set(_FIELDS))
    if unknown:
        fail(unknown[0], f'not a dataset skeleton field (fields: {", ".join(_FIELDS)})')
    texts = {}
    for field, default in (('name', None), ('supercategory', 'person'), ('description', '')):
        value = content.get(field, default)
        if value is None:
            fail(field, 'missing')
        if not isinstance(value, str) or (field != 'description' and not value.strip()):
            fail(field, 'must be a non-empty string')
        texts[field] = value
    names, points = _keypoints(content.get('keypoints'), fail)
    return DatasetSkeleton(
        name=texts['name'],
        keypoints=names,
        points=points,
        skeleton=_limbs(content.get('skeleton', []), names, fail),
        supercategory=texts['supercategory'],
    )


def _keypoints(entries, fail) -> tuple[tuple[str, ...], tuple[str, ...]]:
    if entries is None:
        fail('keypoints', 'missing')
    if not isinstance(entries, list) or not entries:
        fail('keypoints', 'must be a non-empty list of [dataset name, body point] pairs or body point names')
    names: list[str] = []
    points: list[str] = []
    for i, entry in enumerate(entries):
        pair = [entry, entry] if isinstance(entry, str) else entry
        if not (isinstance(pair, list) and len(pair) == 2 and all(isinstance(v, str) and v for v in pair)):
            fail(f'keypoints[{i}]', f'must be [dataset name, body point] or a body point name, not {entry!r}')
        name, point = pair
        if point not in POINT_INDEX:
            fail(f'keypoints[{i}]', f'{point!r} is not a body point (body points: {", ".join(BODY_POINTS)})')
        if name in names:
            fail(f'keypoints[{i}]', f'{name!r} is listed twice')
        if point in points:
            fail(
                f'keypoints[{i}]',
                f'{name!r} takes body point {point!r}, as {names[points.index(point)]!r} does already '
                '(two keypoints at one point could never be told apart)',
            )
        names.append(name)
        points.append(point)
    return tuple(names), tuple(points)


def _limbs(entries, names: tuple[str, ...], fail) -> tuple[tuple[int, int], ...]:
    """1-based index pairs from pairs of names or of 1-based indices."""
    if not isinstance(entries, list):
        fail('skeleton', 'must be a list of keypoint pairs')
    limbs: list[tuple[int, int]] = []
    for i, pair in enumerate(entries):
        if not (isinstance(pair, list) and len(pair) == 2):
            fail(f'skeleton[{i}]', f'must be a pair of keypoint names or 1-based indices, not {pair!r}')
        ends = []
        for end in pair:
            if isinstance(end, str) and end in names:
                ends.append(names.index(end) + 1)
            elif type(end) is int and 1 <= end <= len(names):
                ends.append(end)
            else:
                fail(f'skeleton[{i}]', f'{end!r} is not one of the keypoints (a name, or 1..{len(names)})')
        if ends[0] == ends[1]:
            fail(f'skeleton[{i}]', f'joins {names[ends[0] - 1]!r} to itself')
        if {tuple(ends), tuple(ends[::-1])} & set(limbs):
            fail(f'skeleton[{i}]', f'[{names[ends[0] - 1]!r}, {names[ends[1] - 1]!r}] is listed twice')
        limbs.append((ends[0], ends[1]))
    return tuple(limbs)
