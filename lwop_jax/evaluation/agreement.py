"""How closely two models' people agree on the same images: people found, and OKS between their poses.

Used to compare a quantized (or bf16) model with its fp32 original where no labels exist: the fp32 poses
stand in for the ground truth.

* OKS of a pose B against a reference pose A: over the keypoints found in either pose, the mean of
  exp(-d^2 / (2 s^2 var_k)) where both found them and 0 where only one did; s^2 = the area (w * h) of A's
  keypoint box, var_k the original's per-keypoint variances (:data:`lwop_jax.skeleton.POSE_VARS`, COCO's
  sigmas). A keypoint found by one model only is a full disagreement, as a miss is in COCO's OKS.
* People are matched greedily, most similar pair first (OKS > 0 only); an unmatched person on either side
  has agreement 0.
* Agreement of a set of images = the mean OKS over all people of both sides, each pair counted once
  (matched pairs + people of A without a match + people of B without a match): 1 when the two models
  give the same people with the same keypoints, lower for every moved, lost or extra keypoint or person.

NumPy only.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lwop_jax.skeleton import POSE_VARS


def pose_oks(reference: np.ndarray, other: np.ndarray, variances=POSE_VARS) -> np.ndarray:
    """(N, K, 3) reference and (M, K, 3) other keypoints (x, y, score; score 0 = not found) -> (N, M) OKS."""
    reference = np.asarray(reference, np.float64).reshape(-1, len(variances), 3)
    other = np.asarray(other, np.float64).reshape(-1, len(variances), 3)
    found_a, found_b = reference[..., 2] > 0, other[..., 2] > 0
    xy = np.where(found_a[..., None], reference[..., :2], np.nan)
    area = np.nan_to_num(np.nanmax(xy, axis=1) - np.nanmin(xy, axis=1), nan=0.0).prod(-1) + np.spacing(1)  # (N,)
    delta = reference[:, None, :, :2] - other[None, :, :, :2]
    similarity = np.exp(-(delta**2).sum(-1) / (2 * area[:, None, None] * np.asarray(variances, np.float64)))
    both = found_a[:, None] & found_b[None]
    either = found_a[:, None] | found_b[None]
    counted = either.sum(-1)
    return np.where(counted > 0, np.where(both, similarity, 0.0).sum(-1) / np.maximum(counted, 1), 0.0)


def match_people(oks: np.ndarray) -> list[tuple[int, int, float]]:
    """Greedy one-to-one matching of an (N, M) OKS matrix, highest first: [(i, j, oks)] with oks > 0."""
    oks = np.array(oks, np.float64, copy=True)
    pairs = []
    while oks.size and oks.max() > 0:
        i, j = np.unravel_index(int(np.argmax(oks)), oks.shape)
        pairs.append((int(i), int(j), float(oks[i, j])))
        oks[i, :] = -1
        oks[:, j] = -1
    return pairs


@dataclass
class Agreement:
    """Running totals of two models' agreement over images (see the module docstring).

    people_a, people_b: people found by each model; matched: pairs with OKS > 0; oks_sum: their OKS summed.
    """

    people_a: int = 0
    people_b: int = 0
    matched: int = 0
    oks_sum: float = 0.0
    images: int = 0

    def add(self, keypoints_a: np.ndarray, keypoints_b: np.ndarray) -> None:
        """One image's people of each model, (N, K, 3) and (M, K, 3) in the same pixel frame."""
        pairs = match_people(pose_oks(keypoints_a, keypoints_b))
        self.people_a += len(keypoints_a)
        self.people_b += len(keypoints_b)
        self.matched += len(pairs)
        self.oks_sum += sum(value for _, _, value in pairs)
        self.images += 1

    @property
    def units(self) -> int:
        """People of both sides, a matched pair counted once."""
        return self.people_a + self.people_b - self.matched

    @property
    def value(self) -> float:
        """Mean OKS over all people (1 when both found nobody: nothing to disagree on)."""
        return self.oks_sum / self.units if self.units else 1.0

    def summary(self, name_a: str = 'A', name_b: str = 'B') -> str:
        return (
            f'people found: {name_a} {self.people_a}, {name_b} {self.people_b}, matched {self.matched} '
            f'({self.images} images); keypoint agreement (mean OKS of {name_b} against {name_a}, '
            f'unmatched people 0): {self.value:.3f}'
        )


__all__ = ['pose_oks', 'match_people', 'Agreement']
