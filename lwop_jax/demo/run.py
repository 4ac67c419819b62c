"""The demo from start to end: its config, the five stages in order, what it prints and the summary it writes."""

from __future__ import annotations

import json
import pathlib
import shutil
import time

from lwop_jax import atomic
from lwop_jax.checkpoints.orbax_io import resolve_orbax_dir
from lwop_jax.configs import demo as demo_configs
from lwop_jax.demo import budget, stages
from lwop_jax.demo.schemas import data_skeleton
from lwop_jax.evaluation.ceiling import ground_truth_ceiling
from lwop_jax.schema import DEFAULT_SCHEMA
from lwop_jax.training.data import schema_of


def demo_config(quick: bool, time_budget: float | None = None, seed: int = 0, keypoint_schema: str = DEFAULT_SCHEMA):
    """lwop_jax.configs.demo, with the --quick overrides applied and the demo's settings resolved;
    ``keypoint_schema`` is one of :func:`lwop_jax.demo.schemas.demo_schemas` (InputFileError otherwise)."""
    data_skeleton(keypoint_schema)
    config = demo_configs.get_config()
    if quick:
        for key, value in config.quick.items():
            if key in config.demo:
                config.demo[key] = value
            else:
                config[key] = value
    if time_budget is not None:
        config.demo.time_budget = float(time_budget)
    config.seed = seed
    config.keypoint_schema = keypoint_schema
    return config


class Stages:
    """Prints each stage as it starts and keeps its duration."""

    def __init__(self):
        self.seconds = {}
        self.start = time.perf_counter()

    def __call__(self, name, message):
        print(f'\n== {name}: {message}', flush=True)
        self.seconds[name] = time.perf_counter()
        return self

    def done(self, name):
        self.seconds[name] = time.perf_counter() - self.seconds[name]
        print(f'   {name} took {self.seconds[name]:.0f} s', flush=True)

    @property
    def total(self):
        return time.perf_counter() - self.start


def _train(config, folders: dict, out: pathlib.Path, stage: Stages):
    demo = config.demo
    stage('train', f'train_and_evaluate on the CPU for ~{demo.time_budget:.0f} s')
    with config.unlocked():
        config.train_labels = str(folders['train'] / 'annotations.json')
        config.train_images = str(folders['train'] / 'images')
    cache_dir = out / 'cache' / 'jax'
    budget.enable_compilation_cache(cache_dir)
    summary = budget.train(config, out / 'train', cache_dir=cache_dir)
    stage.done('train')
    return summary, resolve_orbax_dir(out / 'train' / 'checkpoints')


def _evaluate(config, checkpoint, folders: dict, out: pathlib.Path, stage: Stages):
    demo = config.demo
    stage(
        'eval', f'COCO keypoint AP on the {demo.num_val_images} held-out images (base height {demo.eval_base_height})'
    )
    record = stages.evaluate(checkpoint, folders['val'], out / 'eval', demo.eval_base_height, demo.flip_test)
    ceiling = ground_truth_ceiling(
        folders['val'] / 'annotations.json',
        folders['val'] / 'images',
        base_height=demo.eval_base_height,
        schema=schema_of(config),
    ).stats['AP']
    print(f'   ceiling: perfect stride-8 maps (the ground truth rendered as targets) score AP {ceiling:.3f} here')
    stage.done('eval')
    return record, ceiling


def _export_and_infer(config, checkpoint, folders: dict, out: pathlib.Path, figure, stage: Stages):
    demo = config.demo
    stage('export', 'ONNX')
    onnx_path = stages.export_onnx(checkpoint, out / 'lwop_demo.onnx')
    stage.done('export')
    stage('infer', f'infer with ONNX Runtime on {demo.num_infer_images} held-out images')
    detections = json.loads((out / 'eval' / 'detections.json').read_text())
    images = stages.pick_images(folders['val'], detections, demo.num_infer_images)
    poses_json = stages.infer(onnx_path, images, out / 'infer', demo.eval_base_height)
    picture = stages.result_picture([out / 'infer' / p.name for p in images[:4]])
    atomic.write_bytes(out / 'demo_result.jpg', picture)
    if figure:
        atomic.write_bytes(figure, picture)
    stage.done('infer')
    return onnx_path, poses_json


def _print_summary(out, paths: dict, record, ceiling, summary, stage, quick):
    stats = record['stats']
    print(f'\nDone in {stage.total:.0f} s. Everything is in {out}/:')
    print(f'  synthetic data      {out / "data"}/{{train,val}}')
    print(f'  checkpoint          {paths["checkpoint"]}')
    print(f'  AP stats            {out / "eval" / "stats.json"} (detections: {out / "eval" / "detections.json"})')
    print(f'  ONNX model          {paths["onnx"]}')
    print(f'  drawn images        {out / "infer"}/ (keypoints: {paths["poses_json"]})')
    figure = paths['figure']
    print(f'  result picture      {out / "demo_result.jpg"}' + (f' and {figure}' if figure else ''))
    flip = f'; flip test {record["flip_stats"]["AP"]:.3f}' if 'flip_stats' in record else ''
    print(
        f'Held-out AP {stats["AP"]:.3f} (AP50 {stats["AP50"]:.3f}, AR {stats["AR"]:.3f}{flip}; perfect maps: '
        f'{ceiling:.3f}) after {summary["iterations"]} iterations ({summary["seconds"]:.0f} s of training)'
        + ('; --quick: a smoke run, the AP means nothing' if quick else '')
    )


def run_demo(
    out: pathlib.Path,
    *,
    quick: bool = False,
    time_budget: float | None = None,
    seed: int = 0,
    figure: pathlib.Path | None = None,
    keypoint_schema: str = DEFAULT_SCHEMA,
) -> dict:
    """The five stages into ``out`` (see the package docstring); returns the summary it writes to
    ``out/demo_summary.json``. keypoint_schema: the keypoints trained (:mod:`lwop_jax.demo.schemas`: coco18
    and coco17 on COCO's 17 synthetic keypoints, figure on the figure skeleton's)."""
    config = demo_config(quick, time_budget, seed, keypoint_schema)
    skeleton = data_skeleton(keypoint_schema)
    schema = schema_of(config)
    demo = config.demo
    stage = Stages()
    for owned in ('data', 'train', 'eval', 'infer'):  # a rerun starts over (training would resume)
        shutil.rmtree(out / owned, ignore_errors=True)
    out.mkdir(parents=True, exist_ok=True)
    print(
        f'lwop_jax demo{" (--quick)" if quick else ""}: output in {out}; training budget '
        f'{demo.time_budget:.0f} s; crops {config.crop_size}, batch {config.batch_size}, base lr {config.base_lr:g}; '
        f'keypoint schema {schema.name} ({schema.num_keypoints} keypoints)'
    )
    stage(
        'data',
        f'{demo.num_train_images} training + {demo.num_val_images} held-out synthetic images '
        f'({demo.image_width}x{demo.image_height}, 1-{demo.max_people} people, skeleton {skeleton or "coco17"})',
    )
    folders = stages.make_data(config, out, seed, skeleton)
    stage.done('data')
    summary, checkpoint = _train(config, folders, out, stage)
    record, ceiling = _evaluate(config, checkpoint, folders, out, stage)
    onnx_path, poses_json = _export_and_infer(config, checkpoint, folders, out, figure, stage)
    results = {
        'ap': record['stats']['AP'],
        'flip_test_ap': record.get('flip_stats', {}).get('AP'),
        'ground_truth_ceiling_ap': ceiling,
        'stats': record['stats'],
        'training': summary,
        'stage_seconds': stage.seconds,
        'total_seconds': stage.total,
        'quick': quick,
        'seed': seed,
        'keypoint_schema': schema.name,
        'num_keypoints': schema.num_keypoints,
        'data_skeleton': skeleton or 'coco17',
        'config': json.loads(config.to_json()),
    }
    atomic.write_json(out / 'demo_summary.json', results, indent=1)
    paths = {'checkpoint': checkpoint, 'onnx': onnx_path, 'poses_json': poses_json, 'figure': figure}
    _print_summary(out, paths, record, ceiling, summary, stage, quick)
    return results
