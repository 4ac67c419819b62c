"""Fine-tuning through the schema transfer against training from scratch, on the demo's synthetic data in the
`figure` skeleton (16 points, 8 of them COCO's; head centre, hand tips, toes and a pelvis are new).

  lwop demo --out runs/demo                                        # a coco18 demo model
  python benchmarks/bench_finetune.py runs/demo/train/checkpoints --iterations 6000 --out runs/bench_finetune

Trains the demo's network (configs/demo.py: crops 96, batch 8) in `figure` for --iterations each way (base
lr --lr, one x0.333 drop at 90 %), checkpoints every 300 iterations, and scores each on the demo's 100
held-out images at eval height 192, as the demo does: from scratch; from the coco18 model with the 11 COCO
points paired by init_keypoint_matches ('matched': 11 of 17 heatmaps, 8 of 16 limbs); from it by identity
alone ('identity': the figure data names its points its own way, so only the backbone, CPM and trunk carry
over). Equal iterations stand for equal time: the same network runs the same steps. Prints the AP curves
and the first iteration at which each reaches --target AP. --arms picks some; --data reuses the synthetic
sets of an earlier run (made here the first time: 800 training and 100 held-out images, seeds 0 and 1).

Measured (2 shared CPU cores; the demo continued to 6000 iterations, held-out AP 0.395, as the source; 6000
iterations, lr 1e-3): from scratch AP 0.380, reaching 0.3 at 5100; matched 0.465, 0.3 at 300; identity
0.437, 0.3 at 600 (curves in the README). At 1200 iterations, for the learning rate (matched): 1e-4 0.316,
3e-4 0.346, 1e-3 0.382, 2e-3 0.373. A check run of 30 iterations: matched 0.114, identity 0.008, scratch 0.
"""

import argparse
import json
import pathlib
import time

from lwop_jax.training import host_heap, quiet

# The demo's coco18 keypoint for each COCO point of the figure skeleton (lwop_jax/synthetic/skeletons/figure.json).
FIGURE_MATCHES = (
    ('neck', 'neck'),
    ('shoulder_r', 'r_sho'),
    ('elbow_r', 'r_elb'),
    ('shoulder_l', 'l_sho'),
    ('elbow_l', 'l_elb'),
    ('hip_r', 'r_hip'),
    ('knee_r', 'r_knee'),
    ('ankle_r', 'r_ank'),
    ('hip_l', 'l_hip'),
    ('knee_l', 'l_knee'),
    ('ankle_l', 'l_ank'),
)
ARMS = ('scratch', 'matched', 'identity')
EVAL_HEIGHT = 192  # lwop_jax.configs.demo: demo.eval_base_height


def arm_config(arm: str, source, data: pathlib.Path, iterations: int, lr: float):
    from lwop_jax.demo.run import demo_config

    config = demo_config(False, keypoint_schema='figure')
    with config.unlocked():
        config.train_labels = str(data / 'data' / 'train' / 'annotations.json')
        config.train_images = str(data / 'data' / 'train' / 'images')
        config.num_train_steps = iterations
        config.base_lr = lr
        config.init_from = '' if arm == 'scratch' else str(source)
        config.init_keypoint_matches = FIGURE_MATCHES if arm == 'matched' else ()
        config.checkpoint_after = 300
        config.keep_checkpoints = 0
    return config


def train_arm(arm: str, source, data: pathlib.Path, out: pathlib.Path, iterations: int, lr: float) -> dict:
    """{iteration: held-out AP} of one arm, iteration 0 (its initialisation) included."""
    from lwop_jax.checkpoints.orbax_io import save_model
    from lwop_jax.demo import budget, stages
    from lwop_jax.training.data import steps_per_epoch, train_data_from_config
    from lwop_jax.training.loop import train_and_evaluate
    from lwop_jax.training.model_init import create_model

    config = arm_config(arm, source, data, iterations, lr)
    train_data = train_data_from_config(config)
    per_epoch = steps_per_epoch(train_data.num_examples, config.batch_size)  # an epoch: the people, not images
    with config.unlocked():
        config.lr_drop_epochs = (max(1, round(0.9 * iterations / per_epoch)),)
    val = data / 'data' / 'val'
    start = save_model(create_model(config).set_training(False), out / 'iteration0')
    curve = {0: stages.evaluate(start, val, out / 'eval' / '0', EVAL_HEIGHT)['stats']['AP']}
    cache = out.parent / 'xla_cache'
    budget.enable_compilation_cache(cache)
    budget.compile_in_child(config, cache)  # as the demo: a step compiled in-process runs slower on CPU
    began = time.perf_counter()
    train_and_evaluate(config, out, train_data=train_data, evaluate_fn=None)
    print(f'{arm}: {iterations} iterations in {time.perf_counter() - began:.0f} s', flush=True)
    for step_dir in sorted((out / 'checkpoints').iterdir(), key=lambda p: int(p.name)):
        record = stages.evaluate(step_dir, val, out / 'eval' / step_dir.name, EVAL_HEIGHT)
        curve[int(step_dir.name)] = record['stats']['AP']
    return curve


def first_reaching(curve: dict, target: float):
    return next((step for step, ap in sorted(curve.items()) if ap >= target), None)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('source', type=pathlib.Path, help='a coco18 demo model (orbax folder)')
    parser.add_argument('--out', type=pathlib.Path, default=pathlib.Path('runs/bench_finetune'))
    parser.add_argument('--data', type=pathlib.Path, help='the synthetic figure sets (default: OUT/figure_data)')
    parser.add_argument('--iterations', type=int, default=6000)
    parser.add_argument('--lr', type=float, default=1e-3)
    parser.add_argument('--target', type=float, default=0.3, help='the AP whose first iteration is reported')
    parser.add_argument('--arms', nargs='+', choices=ARMS, default=list(ARMS))
    args = parser.parse_args()
    host_heap.keep_freed_memory()
    quiet.start_tensorflow_quietly(False)
    from lwop_jax.demo import stages
    from lwop_jax.demo.run import demo_config

    data = args.data or args.out / 'figure_data'
    if not (data / 'data' / 'val' / 'annotations.json').exists():
        stages.make_data(demo_config(False, keypoint_schema='figure'), data, seed=0, skeleton='figure')
    curves = {}
    for arm in args.arms:
        curves[arm] = train_arm(arm, args.source, data, args.out / arm, args.iterations, args.lr)
        (args.out / 'curves.json').write_text(json.dumps(curves, indent=1))
    steps = sorted(curves[args.arms[0]])
    print('\n| iteration | ' + ' | '.join(map(str, steps)) + f' | AP {args.target} at |')
    print('|---' * (len(steps) + 2) + '|')
    for arm, curve in curves.items():
        reached = first_reaching(curve, args.target)
        cells = ' | '.join(f'{curve[step]:.3f}' for step in steps)
        print(f'| {arm} | {cells} | {reached if reached is not None else "not reached"} |')


if __name__ == '__main__':
    main()
