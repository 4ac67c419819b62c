"""COCO stage 3: 3 refinement stages from the stage-2 weights (new stages random), 370k iterations.

  python train.py --config configs/coco_stage3.py --workdir runs/stage3 \
      --config.coco_dir=/data/coco --config.init_from=runs/stage2/checkpoints

Validation (and the published model) use 1 refinement stage: the two extra stages only help training.
Evaluate the result with e.g. ``weights.load_any('runs/stage3/checkpoints', num_refinement_stages=1)``.
Expected: AP ~40% on COCO val2017 with 1 refinement stage (the published checkpoint_iter_370000.pth,
38.6% on the 250-image val subset), (30M images, 3 stages: ~2-3 days at
150-200 images/s; not measured here).
"""
from lwop_jax.configs import coco_stage1


def get_config():
    config = coco_stage1.get_config()
    config.init_from = ''   # required: the stage-2 result
    config.from_mobilenet = False
    config.num_refinement_stages = 3
    config.eval_num_refinement_stages = 1
    config.num_train_steps = 370_000
    return config
