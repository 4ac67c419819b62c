"""Keypoint schemas: which points a network predicts, how they come from a dataset, and how people are
grouped from them, as one value that a model carries with it.

A schema is read from a JSON file (``lwop_jax/schemas/<name>.json`` ships ``coco18``, the original's
skeleton, and ``coco17``, COCO's own 17 keypoints)::

    {"name": "figure14",
     "keypoints": ["pelvis", "head", ...],          # heatmap channels in order; background comes last
     "derived": {"pelvis": ["hip_l", "hip_r"]},     # midpoint of two dataset keypoints (the original's neck)
     "source": {"r_sho": "right_shoulder"},         # dataset name of a keypoint when it differs from its own
     "limbs": [["pelvis", "hip_r"], ...],           # PAF limbs in the order the greedy grouping visits them
     "paf_channels": [[12, 13], ...],               # optional: the (x, y) PAF channels of each limb (2i, 2i+1)
     "completing_limbs": [["shoulder_l", "head"]],  # limbs that only fill empty slots (listed in limbs too)
     "flip_pairs": [["shoulder_l", "shoulder_r"]],  # swapped by a horizontal flip
     "sigmas": {"pelvis": 0.107, ...},              # OKS sigmas (evaluation, tracking)
     "colors": {"default": [0, 224, 255]}}          # optional BGR: 'default' and per keypoint (a limb takes
                                                    # its second keypoint's colour)

Every problem in a file is one :class:`SchemaError` line naming the file and the field. Standard library
and NumPy only: every layer may import this module.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import pathlib
from collections.abc import Sequence

import numpy as np

from lwop_jax.errors import InputFileError

SCHEMA_FOLDER = pathlib.Path(__file__).with_name('schemas')
DEFAULT_SCHEMA = 'coco18'
DEFAULT_COLOR = (0, 224, 255)  # BGR; the original draws every limb in this colour


class SchemaError(InputFileError):
    """A keypoint schema that cannot be used; the message names the file and the field."""


@dataclasses.dataclass(frozen=True)
class KeypointSchema:
    """A validated schema; keypoints and limbs as indices (see the module docstring for the fields).

    Frozen and made of tuples, so it can sit in frozen configs and be compared and hashed.
    """

    name: str
    keypoints: tuple[str, ...]
    limbs: tuple[tuple[int, int], ...]
    paf_channels: tuple[tuple[int, int], ...]
    completing: tuple[bool, ...]  # per limb
    flip_pairs: tuple[tuple[int, int], ...]
    sigmas: tuple[float, ...]
    sources: tuple[str | tuple[str, str], ...]  # per keypoint: a dataset name, or the two of a midpoint
    colors: tuple[tuple[int, int, int], ...]  # per keypoint (BGR)

    # ---------------------------------------------------------------- sizes
    @property
    def num_keypoints(self) -> int:
        return len(self.keypoints)

    @property
    def num_heatmaps(self) -> int:
        """Keypoints + the background channel."""
        return len(self.keypoints) + 1

    @property
    def num_pafs(self) -> int:
        return 2 * len(self.limbs)

    # ---------------------------------------------------------------- derived tables
    @property
    def flip_permutation(self) -> tuple[int, ...]:
        """``[k]`` = the keypoint that k becomes after a horizontal flip."""
        permutation = list(range(self.num_keypoints))
        for a, b in self.flip_pairs:
            permutation[a], permutation[b] = b, a
        return tuple(permutation)

    @property
    def training_limbs(self) -> tuple[tuple[int, int], ...]:
        """Limb drawn into PAF channels 2c, 2c+1, for c = 0..L-1 (the original's datasets/coco.py table)."""
        by_channel = {x // 2: limb for limb, (x, _) in zip(self.limbs, self.paf_channels)}
        return tuple(by_channel[c] for c in range(len(self.limbs)))

    @property
    def drawn_limbs(self) -> tuple[tuple[int, int], ...]:
        """The limbs a drawing shows: all but the completing ones (as the original's demo)."""
        return tuple(limb for limb, completing in zip(self.limbs, self.completing) if not completing)

    @property
    def derived_keypoints(self) -> tuple[int, ...]:
        return tuple(k for k, source in enumerate(self.sources) if isinstance(source, tuple))

    @property
    def oks_sigmas(self) -> np.ndarray:
        """(K,) float32 sigmas, computed as the original tracker does (modules/pose.py writes them in
        tenths, float32, then divides by 10), so that coco18 gives its values to the last bit."""
        return np.asarray(np.round(np.asarray(self.sigmas) * 10, 10), np.float32) / 10.0

    @property
    def oks_vars(self) -> np.ndarray:
        """(2 sigma)^2 per keypoint, float32, as the original tracker uses them."""
        return (self.oks_sigmas * 2) ** 2

    def dataset_layout(self, dataset_names: Sequence[str], where: str) -> DatasetLayout:
        """Where each keypoint comes from in a dataset whose category lists ``dataset_names``.

        Raises SchemaError naming ``where`` (the dataset file) and the first name the schema needs that the
        category lacks.
        """
        index = {name: i for i, name in enumerate(dataset_names)}
        direct, derived = [], []
        for k, source in enumerate(self.sources):
            needed = source if isinstance(source, tuple) else (source,)
            missing = [name for name in needed if name not in index]
            if missing:
                raise SchemaError(
                    f"{where}: the category's keypoints lack {missing[0]!r}, which keypoint "
                    f'{self.keypoints[k]!r} of schema {self.name!r} needs'
                )
            if isinstance(source, tuple):
                direct.append(-1)
                derived.append((k, index[source[0]], index[source[1]]))
            else:
                direct.append(index[source])
        return DatasetLayout(len(dataset_names), tuple(direct), tuple(derived))

    # ---------------------------------------------------------------- JSON
    def to_json(self) -> dict:
        """The schema as its file's JSON object (loads back to an equal schema)."""
        names = self.keypoints
        return {
            'name': self.name,
            'keypoints': list(names),
            'derived': {names[k]: list(s) for k, s in enumerate(self.sources) if isinstance(s, tuple)},
            'source': {names[k]: s for k, s in enumerate(self.sources) if isinstance(s, str) and s != names[k]},
            'limbs': [[names[a], names[b]] for a, b in self.limbs],
            'paf_channels': [list(channels) for channels in self.paf_channels],
            'completing_limbs': [[names[a], names[b]] for (a, b), c in zip(self.limbs, self.completing) if c],
            'flip_pairs': [[names[a], names[b]] for a, b in self.flip_pairs],
            'sigmas': dict(zip(names, self.sigmas)),
            'colors': {name: list(color) for name, color in zip(names, self.colors)},
        }


@dataclasses.dataclass(frozen=True)
class DatasetLayout:
    """A schema's keypoints in a dataset: ``direct[k]`` is the dataset index of keypoint k (-1 when it is
    derived), ``derived`` holds (k, dataset index a, dataset index b) of each midpoint keypoint."""

    num_dataset_keypoints: int
    direct: tuple[int, ...]
    derived: tuple[tuple[int, int, int], ...]

    @property
    def used_dataset_keypoints(self) -> tuple[int, ...]:
        """Dataset keypoints the schema reads, directly or through a midpoint."""
        used = {i for i in self.direct if i >= 0} | {i for _, a, b in self.derived for i in (a, b)}
        return tuple(sorted(used))


def load_schema(name_or_path: str | pathlib.Path | None = None) -> KeypointSchema:
    """A shipped schema by name (``coco18``, ``coco17``, ``figure``; None: coco18) or a schema JSON file."""
    name_or_path = DEFAULT_SCHEMA if name_or_path is None else name_or_path
    path = pathlib.Path(name_or_path)
    if path.suffix != '.json' and not path.is_file():  # a name, not a file (a folder of that name aside)
        return _shipped_schema(str(name_or_path))
    return _read_schema(path)


@functools.lru_cache
def _shipped_schema(name: str) -> KeypointSchema:
    """A shipped schema, read once per process (results and decoders ask for the default one often)."""
    path = SCHEMA_FOLDER / f'{name}.json'
    if not path.is_file():
        shipped = ', '.join(sorted(p.stem for p in SCHEMA_FOLDER.glob('*.json')))
        raise SchemaError(f'{name}: no such keypoint schema (shipped: {shipped}; or a .json file)')
    return _read_schema(path)


def _read_schema(path: pathlib.Path) -> KeypointSchema:
    return schema_from_json(read_json_file(path, 'the schema', SchemaError), str(path))


def read_json_file(path: pathlib.Path, what: str, error: type[InputFileError]):
    """The parsed JSON of a small description file (a schema, a dataset skeleton); ``error`` (one line
    naming the file) when it cannot be read or parsed."""
    try:
        return json.loads(path.read_text())
    except OSError as exc:
        raise error(f'{path}: cannot read {what} ({exc.strerror or exc})') from None
    except ValueError as exc:
        raise error(f'{path}: not valid JSON ({exc})') from None


def schema_from_json(content, where: str) -> KeypointSchema:
    """A schema from its JSON object; ``where`` names the file in error messages."""
    fields = _Fields(content, where)
    names = fields.names('keypoints')
    keypoint = {name: k for k, name in enumerate(names)}
    limbs = fields.pairs('limbs', keypoint)
    completing_pairs = set(fields.pairs('completing_limbs', keypoint, required=False))
    for pair in sorted(completing_pairs - set(limbs)):
        fields.fail('completing_limbs', f'[{names[pair[0]]!r}, {names[pair[1]]!r}] is not one of the limbs')
    completing = tuple(limb in completing_pairs for limb in limbs)
    schema = KeypointSchema(
        name=fields.text('name'),
        keypoints=names,
        limbs=limbs,
        paf_channels=fields.channels(len(limbs)),
        completing=completing,
        flip_pairs=fields.flip_pairs(keypoint),
        sigmas=fields.sigmas(names),
        sources=fields.sources(names),
        colors=fields.colors(names),
    )
    _check_grouping(schema, fields)
    return schema


def _check_grouping(schema: KeypointSchema, fields: _Fields) -> None:
    """Refuses limbs the greedy grouping cannot use as the original does.

    A regular limb joins a person through its first keypoint, so that keypoint must be an end of an
    earlier limb (the first limb starts people), and it fills its second keypoint, which no earlier limb
    may have filled (a tree, as the original's: each keypoint comes from one limb). Completing limbs
    come after the regular ones, on keypoints no other completing limb touches (each fills one empty
    slot from the other end). Every keypoint must be on a limb.
    """
    names, reached, completing_ends = schema.keypoints, set(), set()
    for i, ((a, b), completing) in enumerate(zip(schema.limbs, schema.completing)):
        ends = f'[{names[a]!r}, {names[b]!r}]'
        if completing:
            if {a, b} & completing_ends:
                fields.fail(f'completing_limbs {ends}', 'shares a keypoint with another completing limb')
            completing_ends |= {a, b}
            continue
        if completing_ends:
            fields.fail(f'limbs[{i}] {ends}', 'comes after a completing limb: completing limbs go last')
        if i > 0 and a not in reached:
            fields.fail(
                f'limbs[{i}] {ends}',
                f'{names[a]!r} is not reached by an earlier limb, so the people it groups would fall apart '
                '(list a limb that reaches it first, or swap the two ends)',
            )
        if b in reached:
            fields.fail(
                f'limbs[{i}] {ends}',
                f'{names[b]!r} is already reached by an earlier limb; each keypoint is grouped through one limb '
                '(make this a completing limb, or drop it)',
            )
        reached |= {a, b}
    alone = [name for k, name in enumerate(names) if k not in reached]
    if alone:
        fields.fail('keypoints', f'{alone[0]!r} is on no regular limb, so it could never join a person')


class _Fields:
    """Typed access to a schema's JSON fields; each problem is one SchemaError naming file and field."""

    def __init__(self, content, where: str):
        if not isinstance(content, dict):
            raise SchemaError(f'{where}: a keypoint schema is a JSON object, not {type(content).__name__}')
        known = {'name', 'keypoints', 'derived', 'source', 'limbs', 'paf_channels', 'completing_limbs',
                 'flip_pairs', 'sigmas', 'colors', 'description'}  # fmt: skip
        unknown = sorted(set(content) - known)
        if unknown:
            raise SchemaError(f'{where}: {unknown[0]}: not a schema field (fields: {", ".join(sorted(known))})')
        self.content, self.where = content, where

    def fail(self, field: str, problem: str):
        raise SchemaError(f'{self.where}: {field}: {problem}')

    def get(self, field: str, kind: type, default=None):
        if field not in self.content:
            if default is None:
                self.fail(field, 'missing')
            return default
        value = self.content[field]
        if not isinstance(value, kind):
            self.fail(field, f'must be a JSON {kind.__name__.replace("dict", "object").replace("str", "string")}')
        return value

    def text(self, field: str) -> str:
        value = self.get(field, str)
        if not value:
            self.fail(field, 'empty')
        return value

    def names(self, field: str) -> tuple[str, ...]:
        values = self.get(field, list)
        if not values or not all(isinstance(v, str) and v for v in values):
            self.fail(field, 'must be a non-empty list of names')
        repeated = sorted({v for v in values if values.count(v) > 1})
        if repeated:
            self.fail(field, f'{repeated[0]!r} is listed twice')
        return tuple(values)

    def pairs(self, field: str, keypoint: dict, required: bool = True) -> tuple[tuple[int, int], ...]:
        values = self.get(field, list, default=None if required else [])
        pairs = []
        for i, pair in enumerate(values):
            if not (isinstance(pair, list) and len(pair) == 2 and all(isinstance(v, str) for v in pair)):
                self.fail(f'{field}[{i}]', 'must be a pair of keypoint names')
            for name in pair:
                if name not in keypoint:
                    self.fail(f'{field}[{i}]', f'{name!r} is not one of the keypoints')
            if pair[0] == pair[1]:
                self.fail(f'{field}[{i}]', f'joins {pair[0]!r} to itself')
            pairs.append((keypoint[pair[0]], keypoint[pair[1]]))
        if required and not pairs:
            self.fail(field, 'must list at least one limb')
        if len(set(map(frozenset, pairs))) != len(pairs):
            self.fail(field, 'a pair is listed twice')
        return tuple(pairs)

    def channels(self, num_limbs: int) -> tuple[tuple[int, int], ...]:
        if 'paf_channels' not in self.content:
            return tuple((2 * i, 2 * i + 1) for i in range(num_limbs))
        values = self.get('paf_channels', list)
        if len(values) != num_limbs:
            self.fail('paf_channels', f'has {len(values)} entries for {num_limbs} limbs')
        pairs = []
        for i, pair in enumerate(values):
            if not (isinstance(pair, list) and len(pair) == 2 and all(type(v) is int for v in pair)):
                self.fail(f'paf_channels[{i}]', 'must be a pair of channel numbers')
            if pair[0] % 2 or pair[1] != pair[0] + 1:
                self.fail(f'paf_channels[{i}]', f'{pair} must be (2c, 2c + 1): x then y of one channel pair')
            pairs.append((pair[0], pair[1]))
        if sorted(x for x, _ in pairs) != list(range(0, 2 * num_limbs, 2)):
            self.fail('paf_channels', f'must use each of the channels 0..{2 * num_limbs - 1} once')
        return tuple(pairs)

    def flip_pairs(self, keypoint: dict) -> tuple[tuple[int, int], ...]:
        pairs = self.pairs('flip_pairs', keypoint, required=False)
        seen: set[int] = set()
        for i, (a, b) in enumerate(pairs):
            if {a, b} & seen:
                twice = a if a in seen else b
                names = {k: name for name, k in keypoint.items()}
                self.fail(f'flip_pairs[{i}]', f'{names[twice]!r} is already in another pair (pairs must not share)')
            seen |= {a, b}
        return pairs

    def sigmas(self, names: tuple[str, ...]) -> tuple[float, ...]:
        values = self.get('sigmas', dict)
        for name in values:
            if name not in names:
                self.fail(f'sigmas.{name}', 'not one of the keypoints')
        sigmas = []
        for name in names:
            if name not in values:
                self.fail('sigmas', f'no sigma for {name!r}')
            value = values[name]
            if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
                self.fail(f'sigmas.{name}', f'must be a number > 0, not {value!r}')
            sigmas.append(float(value))
        return tuple(sigmas)

    def sources(self, names: tuple[str, ...]) -> tuple[str | tuple[str, str], ...]:
        derived = self.get('derived', dict, default={})
        renamed = self.get('source', dict, default={})
        for field, mapping in (('derived', derived), ('source', renamed)):
            for name in mapping:
                if name not in names:
                    self.fail(f'{field}.{name}', 'not one of the keypoints')
        sources: list[str | tuple[str, str]] = []
        for name in names:
            if name in derived and name in renamed:
                self.fail(f'source.{name}', 'is also derived: a keypoint comes from one place')
            if name in derived:
                pair = derived[name]
                if not (isinstance(pair, list) and len(pair) == 2 and all(isinstance(v, str) and v for v in pair)):
                    self.fail(f'derived.{name}', 'must be a pair of dataset keypoint names')
                sources.append((pair[0], pair[1]))
            else:
                source = renamed.get(name, name)
                if not isinstance(source, str) or not source:
                    self.fail(f'source.{name}', 'must be a dataset keypoint name')
                sources.append(source)
        return tuple(sources)

    def colors(self, names: tuple[str, ...]) -> tuple[tuple[int, int, int], ...]:
        values = self.get('colors', dict, default={})
        for name, color in values.items():
            if name != 'default' and name not in names:
                self.fail(f'colors.{name}', 'not one of the keypoints (or "default")')
            if not (
                isinstance(color, list) and len(color) == 3 and all(type(v) is int and 0 <= v <= 255 for v in color)
            ):
                self.fail(f'colors.{name}', 'must be [B, G, R] with integers 0..255')
        default = tuple(values.get('default', DEFAULT_COLOR))
        return tuple(tuple(values.get(name, default)) for name in names)  # type: ignore[misc]
