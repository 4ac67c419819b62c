"""COCO stage 2: from the stage-1 weights (weights only, fresh optimizer and schedule), 280k iterations.

  python train.py --config configs/coco_stage2.py --workdir runs/stage2 \
      --config.coco_dir=/data/coco --config.init_from=runs/stage1/checkpoints

(init_from takes a CheckpointManager folder (its latest step), one step folder, or the original's
checkpoint_iter_420000.pth.) Expected: AP ~39% on COCO val2017 (22M images: ~1.3 days at 200 images/s;
not measured here).
"""
from lwop_jax.configs import coco_stage1


def get_config():
    config = coco_stage1.get_config()
    config.init_from = ''   # required: the stage-1 result
    config.from_mobilenet = False
    config.num_train_steps = 280_000
    return config
