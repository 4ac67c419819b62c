"""Offline end-to-end demo: synthetic people -> CPU training -> AP on held-out images -> ONNX -> infer.py.

  python -m lwop_jax.demo --out runs/demo [--time-budget SECONDS] [--quick] [--seed N] [--figure PATH]

Stages (settings in configs/demo.py; nothing is downloaded):

1. data:   ``OUT/data/train`` and ``OUT/data/val``, procedural COCO person-keypoint sets
           (lwop_jax.synthetic) drawn from different seeds, so the validation images are held out;
2. train:  ``train_lib.train_and_evaluate`` (tf.data pipeline, the original's Adam groups, orbax
           checkpoints in ``OUT/train/checkpoints``), from scratch, for ``--time-budget`` seconds: a short
           calibration run times an iteration, then training resumes from its checkpoint up to the step
           the rest of the budget allows (learning rate x0.333 once, at 90 % of it);
3. eval:   COCO keypoint AP of the last checkpoint on the held-out set (lwop_jax.coco_eval, the
           evaluate.py path): ``OUT/eval/detections.json`` and ``OUT/eval/stats.json`` (the 10 stats);
           the same with the flip test in ``OUT/eval/flip_stats.json`` (``demo.flip_test``); and
           the ceiling, the AP of perfect maps (coco_eval.ground_truth_ceiling);
4. export: ``OUT/lwop_demo.onnx`` (BatchNorm folded, dynamic batch/height/width);
5. infer:  infer.py with ONNX Runtime on held-out images: drawn images in ``OUT/infer/`` and the
           keypoints in ``OUT/infer/poses.json``; the best-looking drawn images, tiled, in
           ``OUT/demo_result.jpg`` (and ``--figure PATH``, e.g. docs/demo_result.jpg).

It prints where everything went, the AP and the time each stage took. A rerun with the same ``--out``
starts over (its data, checkpoints and results are replaced). ``--quick`` (CI) runs the same stages on
tiny sets for a few iterations (1-2 minutes); its AP means nothing.
"""
import argparse
import importlib.util
import json
import logging
import os
import pathlib
import shutil
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]   # the repository: configs/, infer.py
STAT_NAMES = ('AP', 'AP50', 'AP75', 'APm', 'APl', 'AR', 'AR50', 'AR75', 'ARm', 'ARl')


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--out', type=pathlib.Path, default=pathlib.Path('runs/demo'), help='output folder')
    parser.add_argument('--time-budget', type=float,
                        help='seconds of training, compilation included (default: configs/demo.py, '
                             'so that the whole demo fits in 10 minutes on 2 CPU cores)')
    parser.add_argument('--quick', action='store_true',
                        help='the short CI version: same stages, tiny data sets, a few iterations')
    parser.add_argument('--seed', type=int, default=0, help='data sets, initialisation and data order')
    parser.add_argument('--figure', type=pathlib.Path,
                        help='also save the result picture here (<= 640 px wide JPEG), e.g. docs/demo_result.jpg')
    args = parser.parse_args(argv)
    if args.time_budget is not None and args.time_budget < 0:
        parser.error('--time-budget must be >= 0')
    return args


def _load_script(name):
    """A top-level script of the repository (infer.py) as a module."""
    path = ROOT / f'{name}.py'
    if not path.is_file():
        raise FileNotFoundError(f'{path} not found: run the demo from a checkout of the repository')
    spec = importlib.util.spec_from_file_location(f'_lwop_demo_{name}', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def demo_config(quick: bool, time_budget=None, seed: int = 0):
    """configs/demo.py, with the --quick overrides applied and the demo's settings resolved."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from configs import demo as demo_configs
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
    return config


class _Stages:
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


# ------------------------------------------------------------------------------------------------ data

def make_data(config, out: pathlib.Path, seed: int) -> dict:
    """The training and held-out sets; returns {'train': dir, 'val': dir} (images/ + annotations.json)."""
    from lwop_jax import synthetic
    demo = config.demo
    folders = {}
    for split, count, split_seed in (('train', demo.num_train_images, 2 * seed),
                                     ('val', demo.num_val_images, 2 * seed + 1)):
        folder = out / 'data' / split
        synthetic.generate_dataset(folder, count, seed=split_seed, width=demo.image_width,
                                   height=demo.image_height, max_people=demo.max_people,
                                   crowd_probability=demo.crowd_probability,
                                   min_person_height=demo.min_person_height,
                                   max_person_height=demo.max_person_height, people_inside=demo.people_inside,
                                   clutter_shapes=tuple(demo.clutter_shapes), workers=demo.data_workers)
        folders[split] = folder
    return folders


# ----------------------------------------------------------------------------------------------- train

class TimedTrainData:
    """The tf.data pipeline as train_lib.TrainData, noting when the loop asks for each batch (i.e. when
    each iteration starts), so the demo can time an iteration."""

    def __init__(self, config, train_dir: pathlib.Path):
        from lwop_jax.data import pipeline
        self.config, self.images = config, str(train_dir / 'images')
        # scale_provided = bbox height / label_net_input_size: sizes people for the demo's crops.
        self.labels = pipeline.load_training_labels(train_dir / 'annotations.json', self.images,
                                                    net_input_size=config.label_net_input_size)
        self.request_times = []

    def batches(self, start_batch):
        from lwop_jax.data import pipeline
        c = self.config
        dataset = pipeline.make_train_dataset(
            self.labels, self.images, batch_size=c.batch_size, crop_size=c.crop_size, stride=c.stride,
            sigma=c.sigma, paf_thickness=c.paf_thickness, seed=c.seed, augment=c.augment,
            max_rotate_degree=c.max_rotate_degree, shuffle=c.shuffle,
            start_step=start_batch, num_parallel_calls=c.num_parallel_calls if c.num_parallel_calls > 0 else None)
        for batch in dataset.as_numpy_iterator():
            self.request_times.append(time.perf_counter())
            yield batch

    def train_data(self):
        from lwop_jax.train_lib import TrainData
        return TrainData(num_examples=len(self.labels), batches=self.batches)


def enable_compilation_cache(cache_dir: pathlib.Path):
    """Persistent XLA cache: the second training call (the resume) reuses the first one's compiled step."""
    import jax
    cache_dir.mkdir(parents=True, exist_ok=True)
    jax.config.update('jax_compilation_cache_dir', str(cache_dir))
    jax.config.update('jax_persistent_cache_min_compile_time_secs', 0.5)
    jax.config.update('jax_persistent_cache_min_entry_size_bytes', 0)


def _compile_step(config, train_dir: pathlib.Path, cache_dir: pathlib.Path, scratch: pathlib.Path) -> float:
    """Runs in a child process: one iteration of ``config`` from scratch in ``scratch``, so that the
    training step it compiles lands in the persistent XLA cache; returns the seconds it took."""
    start = time.perf_counter()
    from lwop_jax import host_heap, train_lib
    host_heap.keep_freed_memory()
    shutil.rmtree(scratch, ignore_errors=True)   # a leftover would be resumed
    enable_compilation_cache(cache_dir)
    logging.getLogger().setLevel(logging.WARNING)
    with config.unlocked():
        config.num_train_steps, config.checkpoint_after, config.log_after = 1, 1, 1
    train_lib.train_and_evaluate(config, scratch, train_data=TimedTrainData(config, train_dir).train_data(),
                                 evaluate_fn=None)
    shutil.rmtree(scratch, ignore_errors=True)
    return time.perf_counter() - start


def compile_in_child(config, train_dir: pathlib.Path, cache_dir: pathlib.Path) -> float:
    """Compiles ``config``'s training step in a separate process, into the persistent cache at
    cache_dir; the training call that follows loads it from there. Returns the seconds it took.

    Why: on XLA:CPU with host_heap.keep_freed_memory, steps run 20-30 % slower in a process that
    compiled the step than in one that loaded the same executable from the cache (500-iteration runs
    of the demo's step, alternating: 0.110-0.124 s against 0.086-0.097 s); malloc_trim after the
    compilation did not help. It needs the tf.data pipeline in the process: a bare loop of the same
    step on in-memory batches ran 0.095 / 0.093 s compiled in-process and 0.089 / 0.093 s loaded from
    the cache, in one process, alternating. The learning-rate drop is a constant of the compiled step,
    so each new drop iteration is a new compilation.
    """
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context('spawn')) as pool:
        return pool.submit(_compile_step, config, train_dir, cache_dir, cache_dir.parent / 'compile_run').result()


def train(config, train_dir: pathlib.Path, workdir: pathlib.Path, cache_dir: pathlib.Path | None = None) -> dict:
    """Trains for about ``config.demo.time_budget`` seconds; returns a summary dict.

    train_and_evaluate runs a fixed number of iterations, so the budget is spent in a few calls: a short
    calibration call, then calls that resume from the last checkpoint up to the iteration the rest of
    the budget allows at the pace the previous call measured (its first iteration, which compiles or
    loads the compiled step, and the pipeline start-up are left out of the pace but counted as
    overhead), planning ``demo.budget_fill`` of the time left so that a slower pace overruns little.
    At most ``demo.max_train_calls`` calls; at least ``demo.min_train_steps`` iterations. With a
    cache_dir (the persistent XLA cache), each new step is compiled in a child process first
    (:func:`compile_in_child`); its time counts against the budget.
    """
    from lwop_jax import train_lib
    demo = config.demo
    data = TimedTrainData(config, train_dir)
    iterations_per_epoch = train_lib.steps_per_epoch(len(data.labels), config.batch_size, config.batches_per_iter)
    start = time.perf_counter()
    cap = config.num_train_steps
    target, calls, drop_epoch, compile_seconds = min(demo.calibration_steps, cap), [], 10 ** 9, 0.0
    while True:
        call_start, first = time.perf_counter(), len(data.request_times)
        if len(calls) == 1:
            # One x lr_drop_factor drop at demo.lr_drop_at of the iterations planned after the calibration
            # (the original's reference overfit run: one drop at 80 %); a top-up call keeps it where it is.
            drop_epoch = max(1, round(demo.lr_drop_at * target / iterations_per_epoch))
        with config.unlocked():
            config.num_train_steps = target
            config.lr_drop_epochs = (drop_epoch,)
        if cache_dir is not None and len(calls) < 2:   # a top-up call reuses the second call's step
            compile_seconds = compile_in_child(config, train_dir, cache_dir)
            print(f'   compiled the training step in a child process ({compile_seconds:.0f} s)', flush=True)
            call_start = time.perf_counter()
        train_lib.train_and_evaluate(config, workdir, train_data=data.train_data(), evaluate_fn=None)
        done, now = target, time.perf_counter()
        requests = data.request_times[first:]
        # Mean pace over the last two thirds of the call's iterations: the first ones compile (or load
        # the compiled step) and wait for the input pipeline's start-up, which is not the pace of a long
        # call (they made a 30-step calibration read 0.15 s for a real 0.11 s); checkpoint saves later
        # in the call make some iterations slower, and they count.
        skip = max(1, len(requests) // 3)
        per_step = (requests[-1] - requests[skip]) / (len(requests) - 1 - skip) if len(requests) > skip + 1 else None
        startup = requests[0] - call_start if requests else 0.0
        calls.append({'to_iteration': done, 'seconds': round(now - call_start, 1),
                      'seconds_per_iteration': per_step and round(per_step, 3)})
        # After the calibration, the next call compiles its own step (the drop is a constant of it):
        # reserve as long as this call's compilation took.
        remaining = demo.time_budget - (now - start) - startup - (compile_seconds if len(calls) == 1 else 0)
        # Plan a little short (the pace varies on a shared machine); a later call tops up.
        more = int(demo.budget_fill * remaining / per_step) if per_step and remaining > 0 else 0
        if more < demo.min_more_steps:
            more = 0
        more = max(more, demo.min_train_steps - done)
        target = min(done + more, cap)
        pace = f'{per_step:.2f} s per iteration' if per_step else 'too few iterations to time'
        print(f'   call {len(calls)}: to iteration {done} in {now - call_start:.0f} s ({pace}); '
              + (f'resuming to iteration {target}' if target > done and len(calls) < demo.max_train_calls
                 else 'done'), flush=True)
        if target <= done or len(calls) >= demo.max_train_calls:
            break
    seconds = time.perf_counter() - start
    return {'iterations': done, 'seconds': seconds, 'calls': calls, 'samples': done * config.batch_size,
            'num_train_labels': len(data.labels)}


# ------------------------------------------------------------------------------------------------ eval

def evaluate(checkpoint, val_dir: pathlib.Path, eval_dir: pathlib.Path, base_height: int,
             flip_test: bool = False) -> dict:
    """COCO keypoint AP of an orbax checkpoint (JAX backend) on the held-out set, as evaluate.py does;
    writes detections.json and stats.json (evaluate.py --stats-json's record) into eval_dir.

    flip_test: also score the flip test (evaluate.py --flip: the maps averaged with those of the mirrored
    image) into flip_stats.json; the record gets its stats as 'flip_stats'.
    """
    from lwop_jax import atomic, coco_eval, runtime
    eval_dir.mkdir(parents=True, exist_ok=True)
    labels = val_dir / 'annotations.json'
    backend = runtime.load_backend(checkpoint, 'jax')
    dataset = coco_eval.load_annotations(labels)

    def score(flip, stats_name):
        result = coco_eval.evaluate_backend(backend, dataset, val_dir / 'images', base_height=base_height,
                                            flip=flip, progress=False)
        record = coco_eval.stats_record(result, checkpoint=checkpoint, backend=backend.name, labels=labels,
                                        base_height=base_height, flip=flip)
        atomic.write_json(eval_dir / stats_name, record, indent=1)
        return result, record

    result, record = score(False, 'stats.json')
    atomic.write_json(eval_dir / 'detections.json', result.detections)
    print(result.summary, end='')
    if result.note:
        print(f'note: {result.note}')
    if flip_test:
        flipped, flip_record = score(True, 'flip_stats.json')
        record['flip_stats'] = flip_record['stats']
        print(f'   with the flip test (evaluate.py --flip): AP {flipped.stats["AP"]:.3f} '
              f'(AP50 {flipped.stats["AP50"]:.3f}, AR {flipped.stats["AR"]:.3f})')
    return record


# ----------------------------------------------------------------------------------------------- infer

def infer(onnx_path, images, infer_dir: pathlib.Path, height: int) -> pathlib.Path:
    """infer.py (ONNX Runtime) on the images: drawn copies in infer_dir, keypoints in infer_dir/poses.json."""
    json_path = infer_dir / 'poses.json'
    status = _load_script('infer').main([
        '--checkpoint-path', str(onnx_path), '--backend', 'onnxruntime', '--height-size', str(height),
        '--images', *map(str, images), '--output-dir', str(infer_dir), '--json', str(json_path)])
    if status != 0:
        raise RuntimeError(f'infer.py failed (exit status {status})')
    return json_path


def pick_images(val_dir: pathlib.Path, detections, count: int) -> list:
    """Held-out images to draw: those with the most people the network found well (by detection score
    against the number of annotated people), best first."""
    dataset = json.loads((val_dir / 'annotations.json').read_text())
    people = {}
    for annotation in dataset['annotations']:
        if not annotation.get('iscrowd') and annotation['num_keypoints'] >= 8:
            people[annotation['image_id']] = people.get(annotation['image_id'], 0) + 1
    found = {}
    for detection in detections:
        if detection['score'] > 0:
            found.setdefault(detection['image_id'], []).append(detection['score'])

    def quality(entry):
        wanted = people.get(entry['id'], 0)
        scores = sorted(found.get(entry['id'], []), reverse=True)
        # Reward images with several people whose strongest detections are many and confident; penalise
        # mismatched counts.
        return (min(wanted, 3), sum(scores[:wanted]) - 2 * abs(len(scores) - wanted))

    ranked = sorted(dataset['images'], key=quality, reverse=True)
    return [val_dir / 'images' / entry['file_name'] for entry in ranked[:count]]


def result_picture(drawn_paths, max_width: int = 640, quality: int = 80):
    """Up to 4 drawn images tiled 2 x 2 (or the first alone), at most max_width wide; JPEG bytes."""
    import cv2
    import numpy as np
    images = [cv2.imread(str(p)) for p in drawn_paths]
    images = [i for i in images if i is not None]
    if not images:
        raise RuntimeError('infer.py drew no image')
    if len(images) >= 4:
        h, w = images[0].shape[:2]
        tiles = [cv2.resize(i, (w, h), interpolation=cv2.INTER_AREA) for i in images[:4]]
        picture = np.concatenate([np.concatenate(tiles[:2], 1), np.concatenate(tiles[2:], 1)], 0)
    else:
        picture = images[0]
    if picture.shape[1] > max_width:
        scale = max_width / picture.shape[1]
        picture = cv2.resize(picture, (max_width, round(picture.shape[0] * scale)), interpolation=cv2.INTER_AREA)
    ok, encoded = cv2.imencode('.jpg', picture, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise RuntimeError('cannot encode the result picture')
    return encoded.tobytes()


# ------------------------------------------------------------------------------------------------ main

def main(argv=None):
    args = parse_args(argv)
    from lwop_jax import host_heap
    host_heap.keep_freed_memory()  # ~15 % faster CPU steps; before JAX starts its threads
    os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')   # TensorFlow's start-up chatter (tf.data only)
    config = demo_config(args.quick, args.time_budget, args.seed)
    demo = config.demo
    out = args.out
    stage = _Stages()
    logging.getLogger().setLevel(logging.WARNING)
    for owned in ('data', 'train', 'eval', 'infer'):   # a rerun starts over (training would resume)
        shutil.rmtree(out / owned, ignore_errors=True)
    out.mkdir(parents=True, exist_ok=True)
    print(f'lwop_jax demo{" (--quick)" if args.quick else ""}: output in {out}; training budget '
          f'{demo.time_budget:.0f} s; crops {config.crop_size}, batch {config.batch_size}, base lr {config.base_lr:g}')

    stage('data', f'{demo.num_train_images} training + {demo.num_val_images} held-out synthetic images '
                  f'({demo.image_width}x{demo.image_height}, 1-{demo.max_people} people)')
    folders = make_data(config, out, args.seed)
    stage.done('data')

    stage('train', f'train_lib.train_and_evaluate on the CPU for ~{demo.time_budget:.0f} s')
    cache_dir = out / 'cache' / 'jax'
    enable_compilation_cache(cache_dir)
    workdir = out / 'train'
    summary = train(config, folders['train'], workdir, cache_dir=cache_dir)
    stage.done('train')
    from lwop_jax import weights
    checkpoint = weights.resolve_orbax_dir(workdir / 'checkpoints')

    stage('eval', f'COCO keypoint AP on the {demo.num_val_images} held-out images (base height '
                  f'{demo.eval_base_height})')
    record = evaluate(checkpoint, folders['val'], out / 'eval', demo.eval_base_height, demo.flip_test)
    from lwop_jax import atomic, coco_eval
    ceiling = coco_eval.ground_truth_ceiling(folders['val'] / 'annotations.json', folders['val'] / 'images',
                                             base_height=demo.eval_base_height).stats['AP']
    print(f'   ceiling: perfect stride-8 maps (the ground truth rendered as targets) score AP {ceiling:.3f} here')
    stage.done('eval')

    stage('export', 'ONNX')
    from lwop_jax import export
    onnx_path = export.export_onnx(weights.load_any(checkpoint), out / 'lwop_demo.onnx')
    stage.done('export')

    stage('infer', f'infer.py with ONNX Runtime on {demo.num_infer_images} held-out images')
    detections = json.loads((out / 'eval' / 'detections.json').read_text())
    images = pick_images(folders['val'], detections, demo.num_infer_images)
    poses_json = infer(onnx_path, images, out / 'infer', demo.eval_base_height)
    picture = result_picture([out / 'infer' / p.name for p in images[:4]])
    atomic.write_bytes(out / 'demo_result.jpg', picture)
    if args.figure:
        args.figure.parent.mkdir(parents=True, exist_ok=True)
        atomic.write_bytes(args.figure, picture)
    stage.done('infer')

    stats = record['stats']
    results = {'ap': stats['AP'], 'flip_test_ap': record.get('flip_stats', {}).get('AP'),
               'ground_truth_ceiling_ap': ceiling, 'stats': stats, 'training': summary,
               'stage_seconds': stage.seconds, 'total_seconds': stage.total, 'quick': args.quick,
               'seed': args.seed, 'config': json.loads(config.to_json())}
    atomic.write_json(out / 'demo_summary.json', results, indent=1)
    print(f'\nDone in {stage.total:.0f} s. Everything is in {out}/:')
    print(f'  synthetic data      {out / "data"}/{{train,val}}')
    print(f'  checkpoint          {checkpoint}')
    print(f'  AP stats            {out / "eval" / "stats.json"} (detections: {out / "eval" / "detections.json"})')
    print(f'  ONNX model          {onnx_path}')
    print(f'  drawn images        {out / "infer"}/ (keypoints: {poses_json})')
    print(f'  result picture      {out / "demo_result.jpg"}' + (f' and {args.figure}' if args.figure else ''))
    flip = f'; flip test {record["flip_stats"]["AP"]:.3f}' if 'flip_stats' in record else ''
    print(f'Held-out AP {stats["AP"]:.3f} (AP50 {stats["AP50"]:.3f}, AR {stats["AR"]:.3f}{flip}; perfect maps: '
          f'{ceiling:.3f}) after {summary["iterations"]} iterations ({summary["seconds"]:.0f} s of training)'
          + ('; --quick: a smoke run, the AP means nothing' if args.quick else ''))
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
