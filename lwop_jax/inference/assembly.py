"""Connection NMS and the greedy pose assembly of the original's group_keypoints, over a keypoint
schema's limbs (:class:`LimbTables`; coco18 by default), bit-identical to the original.

Part of the CPU inference path: NumPy and the standard library only.
"""

import functools
from dataclasses import dataclass

import numpy as np

from lwop_jax.schema import KeypointSchema, load_schema


@dataclass(frozen=True)
class LimbTables:
    """A schema's grouping as arrays: ``types`` (L, 2) keypoint types a, b and ``channels`` (L, 2) PAF
    channels x, y of each limb in visiting order; ``completing`` the indices of the completing limbs;
    ``paired_channels`` whether every limb's (x, y) channels are an aligned pair (2k, 2k + 1)."""

    num_keypoints: int
    types: np.ndarray
    channels: np.ndarray
    completing: tuple[int, ...]
    paired_channels: bool


@functools.lru_cache
def limb_tables(schema: KeypointSchema | None = None) -> LimbTables:
    """The decoder's tables of ``schema`` (None: coco18, the original's)."""
    schema = schema or load_schema()
    completing = tuple(i for i, flag in enumerate(schema.completing) if flag)
    check_limb_order(schema.limbs, completing)
    channels = np.asarray(schema.paf_channels)
    paired = bool((channels[:, 0] % 2 == 0).all() and (channels[:, 1] == channels[:, 0] + 1).all())
    return LimbTables(schema.num_keypoints, np.asarray(schema.limbs), channels, completing, paired)


def best_first(limb, scores):
    """(N,) visiting order of the original's connections_nms: by limb, and within a limb as
    `scores.argsort()[::-1]` (default kind) on that limb's scores in candidate order. One lexsort
    gives that order where a limb's scores are distinct (descending order is then unique); a limb
    with tied scores is sorted by the original's own call, whose tie order is its own.
    limb: (N,) sorted; scores: (N,) float64."""
    order = np.lexsort((-scores, limb))
    sorted_scores, sorted_limbs = scores[order], limb[order]
    tied = (sorted_scores[1:] == sorted_scores[:-1]) & (sorted_limbs[1:] == sorted_limbs[:-1])
    if not tied.any():  # the common case, checked first: np.unique costs more than the rest here
        return order
    for part in np.unique(sorted_limbs[1:][tied]).tolist():
        start, stop = np.searchsorted(limb, [part, part + 1]).tolist()
        order[start:stop] = start + scores[start:stop].argsort()[::-1]
    return order


def connection_nms(limb, a, b, scores, ids, num_limbs):
    """Original connections_nms of every limb: best first, keep a connection when neither of its
    keypoints is used yet in that limb. limb, a, b (rows of all_keypoints), scores: (N,) valid limbs
    in candidate order; ids: (K,) list of keypoint ids by row. Returns, per limb, lists
    (ids_a, ids_b, scores) of the kept connections, best first."""
    order = best_first(limb, scores)
    kept = [([], [], []) for _ in range(num_limbs)]
    used = set()  # (limb, 0, row a) and (limb, 1, row b)
    for part, i, j, score in zip(limb[order].tolist(), a[order].tolist(), b[order].tolist(), scores[order].tolist()):
        if (part, 0, i) not in used and (part, 1, j) not in used:
            used.update(((part, 0, i), (part, 1, j)))
            for column, value in zip(kept[part], (ids[i], ids[j], score)):
                column.append(value)
    return kept


# ----------------------------------------------------------------------------------------------
# Pose assembly (original group_keypoints, greedy part, one limb at a time)
# ----------------------------------------------------------------------------------------------


@functools.lru_cache
def check_limb_order(limb_types, ear_limbs):
    """The assembly finds "the pose holding keypoint i in slot t" by lookup instead of the original's
    scan over all poses. That is exact when such a pose is unique, which the limb order guarantees:
    a limb's slot b is filled by no earlier limb (so it was empty, and its ids are distinct
    connection ends), and the ear limbs come last, on slots no other ear limb touches."""
    ordinary, ears = limb_types[: len(limb_types) - len(ear_limbs)], [limb_types[limb] for limb in ear_limbs]
    filled_late = [b for limb, (_, b) in enumerate(ordinary) if b in sum(ordinary[:limb], ())]
    ears_last = sorted(ear_limbs) == list(range(len(ordinary), len(limb_types)))
    if filled_late or not ears_last or len(set(sum(ears, ()))) < 2 * len(ears):
        raise ValueError('limb order: a slot filled twice or after its use, or ear limbs not last on distinct slots')


def assemble(connections, kpt_scores, tables):
    """The original's greedy assembly. connections: per limb, lists (ids_a, ids_b, scores) best first;
    kpt_scores: (K,) list of peak scores by id. An ordinary limb a -> b gives b and the scores to the
    pose holding a in slot a, or starts a 2-keypoint pose; a completing limb only fills empty slots.
    Returns (P, S + 2) float64 pose entries (S keypoint slots), in creation order. Float64 sums in the
    original's order."""
    poses = []
    entry_size = tables.num_keypoints + 2
    holder = [{} for _ in range(tables.num_keypoints)]  # per slot: keypoint id -> index of the pose holding it
    for part_id, ((type_a, type_b), (ids_a, ids_b, scores)) in enumerate(zip(tables.types.tolist(), connections)):
        by_a, by_b = holder[type_a], holder[type_b]
        if part_id in tables.completing:
            for i, j in zip(ids_a, ids_b):
                p, q = by_a.get(i), by_b.get(j)
                if p is not None and poses[p][type_b] == -1:
                    poses[p][type_b] = j
                if q is not None and q != p and poses[q][type_a] == -1:
                    poses[q][type_a] = i
            continue
        for i, j, score in zip(ids_a, ids_b, scores):
            p = by_a.get(i)
            if p is None:
                pose = [-1.0] * entry_size
                pose[type_a], pose[type_b], pose[-1], pose[-2] = i, j, 2, (kpt_scores[i] + kpt_scores[j]) + score
                by_a[i] = p = len(poses)
                poses.append(pose)
            else:
                pose = poses[p]
                pose[type_b] = j
                pose[-1] += 1
                pose[-2] += kpt_scores[j] + score
            by_b[j] = p
    return np.array(poses, dtype=np.float64).reshape(-1, entry_size)
