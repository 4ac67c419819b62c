"""Schema transfer: a trained network's weights into a network of another keypoint schema.

One function, :func:`transfer_weights`, used by ``lwop convert --to-schema`` and by training (``init_from``
whose schema differs from ``keypoint_schema``; with the same schema it is a plain copy):

- every tensor that does not depend on the schema (backbone, CPM, stage trunks, the heads' hidden layers)
  is copied whole;
- a heatmap channel is mapped from the source channel of the same keypoint, matched by identity: the
  dataset keypoint it reads (its ``source``), or the unordered pair a ``derived`` point is the midpoint
  of. Names and order do not count. The background channel maps to the background;
- a limb's PAF channels (x, y) are mapped from the source limb with the same two endpoints, in either
  direction. A PAF is the unit vector from a limb's first keypoint to its second (data/targets.py), so a
  reversed limb's x and y channels are negated: in the output convolution's kernel and bias, and in the
  rows of the next refinement stage's input kernel that read them;
- the refinement stages' input convolution reads [features, heatmaps, PAFs] concatenated (PoseNet): its
  feature rows are copied, its heatmap and PAF rows mapped as above;
- everything unmatched keeps its initialisation, as do refinement stages the source lacks (extra source
  stages are ignored).
"""

from __future__ import annotations

import dataclasses
import logging
import re
from collections.abc import Sequence

import numpy as np
from flax import nnx

from lwop_jax.checkpoints import hub
from lwop_jax.checkpoints.orbax_io import load_any
from lwop_jax.errors import FetchError, InputFileError, ModelFileError
from lwop_jax.model.posenet import PoseNet
from lwop_jax.model.variables import assign, model_size, refinement_stage_of, variables
from lwop_jax.schema import KeypointSchema, load_schema

logger = logging.getLogger(__name__)

# The schema-dependent tensors, by dotted key: the heads' output convolutions (output channels on the last
# axis of kernel and bias) and the refinement stages' input convolution (input channels: the kernel's rows).
_HEATMAP_OUTPUT = re.compile(r'(initial_stage|refinement_stages\.\d+)\.heatmaps\.1\.0\.(kernel|bias)$')
_PAF_OUTPUT = re.compile(r'(initial_stage|refinement_stages\.\d+)\.pafs\.1\.0\.(kernel|bias)$')
_STAGE_INPUT = re.compile(r'refinement_stages\.\d+\.trunk\.0\.initial\.0\.kernel$')
_BACKBONE_SIZE = ('backbone_width', 'backbone_depth', 'num_channels')


@dataclasses.dataclass(frozen=True)
class SchemaMapping:
    """Target channel <- source channel, per head. ``pafs`` holds (target, source, sign) per PAF channel."""

    source: KeypointSchema
    target: KeypointSchema
    heatmaps: tuple[tuple[int, int], ...]  # keypoints, then the background
    pafs: tuple[tuple[int, int, float], ...]
    keypoints_mapped: int
    limbs_mapped: int
    limbs_reversed: int

    @property
    def channels_fresh(self) -> int:
        """Output channels of one stage left at their initialisation (heatmaps and PAFs)."""
        return self.target.num_heatmaps + self.target.num_pafs - len(self.heatmaps) - len(self.pafs)


def keypoint_identity(schema: KeypointSchema, k: int) -> tuple:
    """What keypoint k is, whatever it is called: the dataset keypoint it reads, or the unordered pair of
    dataset keypoints it is the midpoint of."""
    source = schema.sources[k]
    return ('midpoint', frozenset(source)) if isinstance(source, tuple) else ('keypoint', source)


def schema_mapping(
    source: KeypointSchema, target: KeypointSchema, matches: Sequence[tuple[str, str]] = ()
) -> SchemaMapping:
    """Which source channel each target channel takes (see the module docstring).

    ``matches`` adds (target keypoint, source keypoint) pairs by the two schemas' keypoint names, for data
    sets that name the same point differently (``('shoulder_r', 'r_sho')``); they take precedence.
    """
    source_keypoint: dict[tuple, int] = {}
    for k in range(source.num_keypoints):
        source_keypoint.setdefault(keypoint_identity(source, k), k)  # the first, if two read the same point
    target_to_source = {
        k: source_keypoint[identity]
        for k in range(target.num_keypoints)
        if (identity := keypoint_identity(target, k)) in source_keypoint
    }
    target_to_source |= _named_matches(source, target, matches)
    heatmaps = [*target_to_source.items(), (target.num_keypoints, source.num_keypoints)]

    source_limb = {frozenset(limb): (limb, channels) for limb, channels in zip(source.limbs, source.paf_channels)}
    pafs, limbs_mapped, reversed_ = [], 0, 0
    for (a, b), (x, y) in zip(target.limbs, target.paf_channels):
        if a not in target_to_source or b not in target_to_source:
            continue
        match = source_limb.get(frozenset((target_to_source[a], target_to_source[b])))
        if match is None:
            continue
        (source_a, _), (source_x, source_y) = match
        sign = 1.0 if source_a == target_to_source[a] else -1.0  # the unit vector b - a turns round
        pafs += [(x, source_x, sign), (y, source_y, sign)]
        limbs_mapped += 1
        reversed_ += sign < 0
    return SchemaMapping(source, target, tuple(heatmaps), tuple(pafs), len(target_to_source), limbs_mapped, reversed_)


def _named_matches(source: KeypointSchema, target: KeypointSchema, matches) -> dict[int, int]:
    pairs = {}
    for match in matches:
        if not (isinstance(match, (tuple, list)) and len(match) == 2):
            raise InputFileError(f'keypoint matches: {match!r} is not a (target keypoint, source keypoint) pair')
        for name, schema in zip(match, (target, source)):
            if name not in schema.keypoints:
                raise InputFileError(
                    f'keypoint matches: {name!r} is not a keypoint of schema {schema.name!r} '
                    f'({", ".join(schema.keypoints)})'
                )
        pairs[target.keypoints.index(match[0])] = source.keypoints.index(match[1])
    return pairs


def _map_channels(source: np.ndarray, initial: np.ndarray, pairs, axis: int, offsets=(0, 0)) -> np.ndarray:
    """``initial`` with the channels of ``pairs`` ((target, source[, sign])) taken from ``source`` along
    ``axis``; ``offsets`` (target, source) shift the channel numbers (the stage input's heatmap rows)."""
    out = np.moveaxis(np.array(initial, dtype=np.float32, copy=True), axis, 0)
    taken = np.moveaxis(np.asarray(source, dtype=np.float32), axis, 0)
    for pair in pairs:
        sign = pair[2] if len(pair) > 2 else 1.0
        out[offsets[0] + pair[0]] = sign * taken[offsets[1] + pair[1]]
    return np.moveaxis(out, 0, axis)


def _stage_input(source: np.ndarray, initial: np.ndarray, mapping: SchemaMapping, num_channels: int) -> np.ndarray:
    """The refinement stage's input kernel (1, 1, C + K + 1 + 2 L, C): feature rows copied, heatmap and PAF
    rows mapped (a reversed limb's rows negated, so that the stage reads the same as before)."""
    features = [(c, c) for c in range(num_channels)]
    out = _map_channels(source, initial, features, axis=2)
    out = _map_channels(source, out, mapping.heatmaps, axis=2, offsets=(num_channels, num_channels))
    paf_offsets = (num_channels + mapping.target.num_heatmaps, num_channels + mapping.source.num_heatmaps)
    return _map_channels(source, out, mapping.pafs, axis=2, offsets=paf_offsets)


@dataclasses.dataclass(frozen=True)
class TransferReport:
    source: str
    mapping: SchemaMapping
    copied_whole: int
    initialised: int  # tensors set from the source: copied whole or mapped
    new_stages: tuple[str, ...]

    @property
    def nothing_mapped(self) -> bool:
        return self.mapping.keypoints_mapped == 0 and self.mapping.limbs_mapped == 0

    def __str__(self) -> str:
        m = self.mapping
        stages = f'; {", ".join(self.new_stages)} keep their initialisation' if self.new_stages else ''
        if self.nothing_mapped:
            return (
                f'{self.source}: no keypoint of schema {m.target.name!r} matches one of schema {m.source.name!r} '
                '(they read other dataset keypoints; pair them by name with lwop convert --keypoint-match or '
                "training's init_keypoint_matches): all but the "
                f'background channel start fresh; kept: the {self.copied_whole} tensors that do not depend on '
                f'the schema (backbone, CPM, stage trunks){stages}'
            )
        return (
            f'schema transfer {m.source.name} -> {m.target.name} from {self.source}: {self.copied_whole} tensors '
            f'copied whole; heatmap channels mapped {m.keypoints_mapped} of {m.target.num_keypoints} (and the '
            f'background); limbs mapped {m.limbs_mapped} of {len(m.target.limbs)} with {m.limbs_reversed} '
            f'reversed; {m.channels_fresh} channels initialised fresh{stages}'
        )


def check_same_backbone(source: PoseNet, target: PoseNet, where: str) -> None:
    """One line when the two networks differ in what the schema does not decide (backbone width, depth,
    CPM and stage channels): no tensor could be copied."""
    theirs, ours = model_size(source), model_size(target)
    if any(theirs[key] != ours[key] for key in _BACKBONE_SIZE):

        def size(s):
            return f'backbone width {s["backbone_width"]:g}, depth {s["backbone_depth"]}, {s["num_channels"]} channels'

        raise ModelFileError(
            f'{where}: a network of {size(theirs)}, not {size(ours)} as the network it should initialise '
            "(set backbone_width, backbone_depth and num_channels to the source's)"
        )


def load_source(name_or_path, *, num_refinement_stages: int | None = None) -> PoseNet:
    """A transfer's source: a torch .pth, an lwop_jax orbax folder, or a published model by name
    (``coco-370k``: downloaded once into the cache)."""
    try:
        path = hub.resolve_checkpoint(name_or_path)
    except FetchError as exc:  # the hub's hint names infer's flag; here the file replaces the name
        file_name = hub.known_model(str(name_or_path)).file_name
        raise FetchError(
            exc.url,
            exc.reason,
            f'cannot download {name_or_path} from {exc.url} ({exc.reason}); download '
            f'{file_name} yourself and give its path in place of {name_or_path}',
        ) from exc
    return load_any(path, num_refinement_stages=num_refinement_stages)


def transfer_weights(
    target: PoseNet, source: PoseNet, where: str, matches: Sequence[tuple[str, str]] = ()
) -> TransferReport:
    """Fills ``target`` (whose ``keypoint_schema`` says what it predicts) from ``source`` in place; returns
    what was done. ``where`` names the source in messages; ``matches``: see :func:`schema_mapping`. Raises
    ModelFileError, changing nothing, when the backbones differ or the source lacks a tensor outside the
    refinement stages."""
    check_same_backbone(source, target, where)
    source_schema = getattr(source, 'keypoint_schema', None) or load_schema()
    mapping = schema_mapping(source_schema, target.keypoint_schema, matches)
    theirs = {key: np.asarray(var.get_value()) for key, var in variables(source).items()}
    lacking = [key for key in variables(target) if key not in theirs and refinement_stage_of(key) is None]
    if lacking:
        raise ModelFileError(f'{where}: lacks {lacking[:8]} ({len(lacking)} tensors)')
    arrays, copied_whole, fresh_stages = {}, 0, set()
    for key, var in variables(target).items():
        if key not in theirs:  # a refinement stage the source lacks
            fresh_stages.add('.'.join(key.split('.')[:2]))
            continue
        initial = np.asarray(var.get_value())
        if _HEATMAP_OUTPUT.search(key):
            arrays[key] = _map_channels(theirs[key], initial, mapping.heatmaps, axis=-1)
        elif _PAF_OUTPUT.search(key):
            arrays[key] = _map_channels(theirs[key], initial, mapping.pafs, axis=-1)
        elif _STAGE_INPUT.search(key):
            arrays[key] = _stage_input(theirs[key], initial, mapping, target.num_channels)
        else:
            arrays[key] = theirs[key]
            copied_whole += 1
    assign(target, arrays, where, strict=False)
    return TransferReport(where, mapping, copied_whole, len(arrays), tuple(sorted(fresh_stages)))


def transferred_model(
    name_or_path,
    schema: KeypointSchema,
    *,
    seed: int = 0,
    num_refinement_stages: int | None = None,
    matches: Sequence[tuple[str, str]] = (),
) -> tuple[PoseNet, TransferReport]:
    """A new network predicting ``schema`` (initialised with ``seed``; as many refinement stages as the
    source keeps), filled from the source's weights by :func:`transfer_weights`; in eval mode."""
    source = load_source(name_or_path, num_refinement_stages=num_refinement_stages)
    size = model_size(source) | {'num_heatmaps': schema.num_heatmaps, 'num_pafs': schema.num_pafs}
    target = PoseNet(num_refinement_stages=source.num_refinement_stages, **size, rngs=nnx.Rngs(seed))
    target.keypoint_schema = schema
    report = transfer_weights(target, source, str(name_or_path), matches)
    return target.set_training(False), report


def announce(report: TransferReport) -> None:
    """The report as one line: a warning when nothing mapped, otherwise printed."""
    if report.nothing_mapped:
        logger.warning('%s', report)
    else:
        print(report, flush=True)
