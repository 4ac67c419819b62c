"""Tiny CPU run on the 4 COCO val2017 mini images (12 training samples): the overfit demonstration.

  python train.py --config configs/tiny.py --workdir runs/tiny
  python evaluate.py --labels ../shared/data/coco_val_mini/person_keypoints_val2017_mini.json \
      --images-folder ../shared/data/coco_val_mini/val2017 --checkpoint-path runs/tiny/checkpoints

The settings of the original's reference overfit run (/work/shared/reference/lwop_overfit_coco4_train_log.txt):
from scratch (no ImageNet weights), 1 refinement stage, crops 184, rotation limited to +-20 degrees,
batch 8, base lr 1e-3 with the 13 Adam groups, constant until iteration 2033 of 2331 (80 %), then x0.333
(here: epoch 1017 = iteration 2034, an epoch being ceil(12 / 8) = 2 iterations as the original counts it).
Validation (AP on the same 4 images, base height 368, single scale) every 250 iterations.

Measured (2 CPU cores, ~1.05 s per iteration with the tf.data pipeline, 41 min): AP on the 4 images
0.000 / 0.097 / 0.170 / 0.404 / 0.541 / 0.694 / 0.743 / 0.754 / 0.822 / 0.797 at iterations 250 / 500 /
... / 2250 / 2331; evaluate.py on the last checkpoint: AP 0.797, AP50 0.904, AR 0.808. The original (its
log above; 0.74 s per iteration): AP 0 up to iteration 750, 0.22 at 1000, 0.44 at 1500, 0.58 at 2000,
0.76 at 2331. A later rerun (keypoint schemas in every layer): evaluate.py AP 0.789; the same with
--config.keypoint_schema=coco17: AP 0.660 (README, "coco17 on real images").
"""
from lwop_jax.configs import default

COCO_MINI = '../shared/data/coco_val_mini'


def get_config():
    config = default.get_config()
    config.train_labels = f'{COCO_MINI}/person_keypoints_val2017_mini.json'
    config.train_images = f'{COCO_MINI}/val2017'
    config.val_labels = config.train_labels
    config.val_images = config.train_images
    config.crop_size = 184
    config.max_rotate_degree = 20.0
    config.batch_size = 8
    config.base_lr = 1e-3
    config.num_train_steps = 2331
    config.num_epochs = -1
    config.lr_drop_epochs = (1017,)
    config.num_parallel_calls = 2
    config.checkpoint_after = 250
    config.keep_checkpoints = 3
    config.val_after = 250
    config.log_after = 25
    config.image_summary_after = 250
    return config
