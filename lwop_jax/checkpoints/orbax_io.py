"""lwop_jax's own model files: orbax checkpoints written by conversion and training, read back strictly.

Layout: a directory with two items, ``model`` (the NNX state as a nested dict: params and BatchNorm
statistics) and ``meta`` (JSON: architecture and provenance). A CheckpointManager root (numbered step
folders, as training writes) is accepted too; its latest step is used. :func:`load_any` also takes a
torch checkpoint file.
"""

from __future__ import annotations

import json
import pathlib

import jax
import numpy as np
import orbax.checkpoint as ocp
from flax import nnx

from lwop_jax.checkpoints.torch_names import model_from_torch
from lwop_jax.errors import ModelFileError
from lwop_jax.model.posenet import PoseNet
from lwop_jax.model.variables import assign, dotted, empty_model, keep_refinement_stages, model_size
from lwop_jax.schema import KeypointSchema, load_schema, schema_from_json

FORMAT_NAME = 'lwop_jax'
FORMAT_VERSION = 1


def model_meta(model: PoseNet, **extra) -> dict:
    return {
        'format': FORMAT_NAME,
        'version': FORMAT_VERSION,
        'num_refinement_stages': model.num_refinement_stages,
        **model_size(model),
        'keypoint_schema': (getattr(model, 'keypoint_schema', None) or load_schema()).to_json(),
        **extra,
    }


def _composite_checkpointer():
    return ocp.Checkpointer(ocp.CompositeCheckpointHandler())


def save_model(model: PoseNet, directory, **meta) -> pathlib.Path:
    """Writes the model as an orbax checkpoint (atomic: orbax writes a temporary folder, then renames)."""
    directory = pathlib.Path(directory).absolute()
    state = nnx.to_pure_dict(nnx.state(model))
    with _composite_checkpointer() as checkpointer:
        checkpointer.save(
            directory,
            ocp.args.Composite(model=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(model_meta(model, **meta))),
            force=True,
        )
    return directory


def resolve_orbax_dir(path) -> pathlib.Path:
    """A checkpoint folder itself, or the latest numbered step of a CheckpointManager root."""
    path = pathlib.Path(path)
    if (path / 'meta').exists() and (path / 'model').exists():
        return path
    steps = sorted((int(p.name), p) for p in path.iterdir() if p.is_dir() and p.name.isdigit()) if path.is_dir() else []
    for _, step_dir in reversed(steps):
        if (step_dir / 'meta').exists() and (step_dir / 'model').exists():
            return step_dir
    raise ModelFileError(f'{path}: not an lwop_jax orbax checkpoint (no model/ and meta/ items, no step folders)')


def read_orbax_meta(path) -> dict:
    directory = resolve_orbax_dir(path)
    for candidate in (directory / 'meta' / 'metadata', *sorted((directory / 'meta').glob('*'))):
        if candidate.is_file():
            try:
                meta = json.loads(candidate.read_text())
            except (ValueError, UnicodeDecodeError):
                continue
            if isinstance(meta, dict) and meta.get('format') == FORMAT_NAME:
                return meta
    raise ModelFileError(f'{directory}: meta item is missing or is not lwop_jax metadata')


def load_model(path, *, num_refinement_stages: int | None = None, dtype=None) -> PoseNet:
    """PoseNet in eval mode from an orbax checkpoint written by :func:`save_model` or by training."""
    directory = resolve_orbax_dir(path)
    meta = read_orbax_meta(directory)
    available = int(meta['num_refinement_stages'])
    k = available if num_refinement_stages is None else num_refinement_stages
    if k > available:
        raise ModelFileError(f'{directory}: holds {available} refinement stages, {k} requested')
    try:
        restored = _restore_model_item_as_numpy(directory.absolute())
    except Exception as exc:  # orbax raises many types; the user needs the file and the reason
        raise ModelFileError(f'{directory}: cannot read the orbax checkpoint ({type(exc).__name__}: {exc})') from exc
    schema = schema_in_meta(meta, directory)
    flat = {dotted(path): np.asarray(leaf) for path, leaf in _flatten_dict(restored['model'])}
    flat = keep_refinement_stages(flat, k)
    model = empty_model(k, dtype, **model_size(meta))
    assign(model, flat, str(directory))
    model.keypoint_schema = schema
    return model.set_training(False)


def schema_in_meta(meta: dict, directory) -> KeypointSchema:
    """The keypoint schema a checkpoint carries (coco18 for files written before schemas), checked against
    the network's head sizes that the metadata records."""
    if 'keypoint_schema' not in meta:
        return load_schema()
    schema = schema_from_json(meta['keypoint_schema'], f'{directory} (meta keypoint_schema)')
    size = model_size(meta)
    if (size['num_heatmaps'], size['num_pafs']) != (schema.num_heatmaps, schema.num_pafs):
        raise ModelFileError(
            f'{directory}: its heads ({size["num_heatmaps"]} heatmaps, {size["num_pafs"]} PAFs) do not fit its '
            f'keypoint schema {schema.name!r} ({schema.num_heatmaps} heatmaps, {schema.num_pafs} PAFs)'
        )
    return schema


def _restore_model_item_as_numpy(directory: pathlib.Path) -> dict:
    """The ``model`` item as NumPy arrays on the host. Restoring to the shardings it was saved with would
    fail wherever the devices differ from the writer's (a multi-host run's checkpoint on one machine)."""
    saved = ocp.PyTreeCheckpointHandler().metadata(directory / 'model')
    tree = getattr(saved, 'tree', saved)
    restore_args = jax.tree.map(lambda _: ocp.RestoreArgs(restore_type=np.ndarray), tree)
    with _composite_checkpointer() as checkpointer:
        return checkpointer.restore(
            directory, ocp.args.Composite(model=ocp.args.PyTreeRestore(restore_args=restore_args))
        )


def _flatten_dict(tree, prefix=()):
    for key, value in tree.items():
        if isinstance(value, dict):
            yield from _flatten_dict(value, prefix + (key,))
        else:
            yield prefix + (key,), value


def load_any(path, *, num_refinement_stages: int | None = None, dtype=None) -> PoseNet:
    """PoseNet in eval mode from a torch checkpoint file or an orbax checkpoint folder."""
    path = pathlib.Path(path)
    if not path.exists():
        raise ModelFileError(f'{path}: file not found')
    if path.is_dir():
        return load_model(path, num_refinement_stages=num_refinement_stages, dtype=dtype)
    return model_from_torch(path, num_refinement_stages=num_refinement_stages, dtype=dtype)
